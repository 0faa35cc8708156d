"""Real-time recommendations with KServe: the model, local server, client and deploy step."""
