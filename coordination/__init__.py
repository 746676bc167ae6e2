"""Finding and starting the one orchestration that handles an account, through the Durable client."""
