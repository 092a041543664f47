"""The soak that hunts faults (#17 item 5): real nodes, mixed traffic, kills, cuts, clock steps."""
