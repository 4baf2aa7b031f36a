"""The data resource catalogue and the three lists: supply, demand, negative (issue 3)."""
