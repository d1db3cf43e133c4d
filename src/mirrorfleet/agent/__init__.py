"""The mirror's sync agent: cheap stamp check, two-stage rsync, signed stamp last."""
