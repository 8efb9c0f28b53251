"""Reports: plots and images of what a run did."""
