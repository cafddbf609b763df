"""`bastion ui`: the dashboard over the history store (app.py builds it; see DESIGN.md)."""
