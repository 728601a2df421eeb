"""Traffic routers: move traffic between the stable and the canary model."""
