"""The Tether broker: web console, client tunnels, relay, audit and recordings."""
