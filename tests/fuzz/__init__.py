"""Coverage-guided fuzzing of every parser a peer reaches (issue #11); see docs/threat-model.md."""
