"""What readers decide about the AI's results: the review store and its exports."""
