"""No API endpoints for webhooks: endpoints and their delivery log are managed by ops in the admin."""

urlpatterns: list = []
