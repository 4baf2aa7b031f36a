"""Share requests, grants, data delivery and routing between nodes (issues 7, 8)."""
