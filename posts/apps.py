from django.apps import AppConfig


class PostsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "posts"

    def ready(self) -> None:
        from factory.signals import job_changed
        from posts import assembly  # noqa: F401 - registers the render job (kind render)
        from posts.costs import on_job_changed as costs_on_job_changed
        from posts.director import jobs  # noqa: F401 - registers the director as the factory's llm runner
        from posts.pipeline import on_job_changed
        from posts.webhooks import on_job_changed as webhooks_on_job_changed

        # Finished jobs made for a post are priced into the cost ledger first, so the page's re-read on the
        # pipeline's job.finished shows their cost (posts.costs swallows its own failures: production goes on).
        job_changed.connect(costs_on_job_changed, dispatch_uid="posts.costs.on_job_changed")
        # Factory jobs made for a post (post.<id>/...) update its shots, its status and its page.
        job_changed.connect(on_job_changed, dispatch_uid="posts.pipeline.on_job_changed")
        # Ending jobs become job.finished / job.failed webhook events.
        job_changed.connect(webhooks_on_job_changed, dispatch_uid="posts.webhooks.on_job_changed")
