"""Ray Serve deployments, the app builder, the HTTP API, the demo and the `citywatch` command."""
