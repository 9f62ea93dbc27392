from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from posts.director.service import DirectorFailed, director_mode, write_storyboard
from posts.models import Post


class Command(BaseCommand):
    help = "Write (or, with --feedback, rewrite) a post's storyboard now; locked shots stay exactly as they are."

    def add_arguments(self, parser):
        parser.add_argument("post_id", type=int)
        parser.add_argument("--feedback", default="", help="what the rewrite must address")

    def handle(self, *args, post_id: int, feedback: str, **options):
        if not Post.objects.filter(pk=post_id).exists():
            raise CommandError(f"No post {post_id}.")
        try:
            post = write_storyboard(post_id=post_id, actor=None, feedback=feedback)
        except DirectorFailed as error:
            raise CommandError(error.message) from None
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from None
        self.stdout.write(f"{post} ({director_mode()} director), version {post.version}:")
        for shot in post.shots.order_by("position"):
            lock = "🔒 " if shot.locked else ""
            text = shot.script or shot.visual_prompt
            self.stdout.write(f"  {lock}{shot.position}. {shot.kind} {shot.duration_seconds}s  {text[:70]}")
