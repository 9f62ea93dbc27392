from django.urls import path

from posts import views

app_name = "posts"

urlpatterns = [
    path("", views.post_list, name="list"),
    path("<int:post_id>/", views.storyboard, name="storyboard"),
    path("<int:post_id>/state", views.state, name="state"),
    path("<int:post_id>/shots", views.shot_create, name="shot-create"),
    path("<int:post_id>/shots/reorder", views.shots_reorder, name="shots-reorder"),
    path("<int:post_id>/shots/<int:shot_id>", views.shot_update, name="shot-update"),
    path("<int:post_id>/shots/<int:shot_id>/delete", views.shot_delete, name="shot-delete"),
    path("<int:post_id>/shots/<int:shot_id>/lock", views.shot_lock, name="shot-lock"),
    path("<int:post_id>/shots/<int:shot_id>/asset", views.shot_asset, name="shot-asset"),
    path("<int:post_id>/shots/<int:shot_id>/generate", views.shot_generate, name="shot-generate"),
    path("<int:post_id>/shots/<int:shot_id>/revoice", views.shot_revoice, name="shot-revoice"),
    path("<int:post_id>/actions/<str:action>", views.post_action, name="action"),
]
