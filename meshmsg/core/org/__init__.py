"""Organisation directories: an offline organisation key vouches for its members."""
