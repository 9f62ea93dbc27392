from django.urls import path

from schedules import views

app_name = "schedules"

urlpatterns = [
    path("", views.calendar, name="calendar"),
]
