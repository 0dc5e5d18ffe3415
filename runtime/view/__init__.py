"""`spex view`: one self-contained, offline HTML page of a run's traces (trees, timelines)."""
