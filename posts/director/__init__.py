"""The director: writes and rewrites storyboards."""
