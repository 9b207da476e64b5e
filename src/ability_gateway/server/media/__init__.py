"""Media: images and videos the gateway stores and serves."""
