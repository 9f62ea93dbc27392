"""Local fake servers speaking the real protocols of what lies outside the process (ComfyUI, ...)."""
