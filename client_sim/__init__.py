"""client_sim: see DESIGN.md; filled in by its issue."""
