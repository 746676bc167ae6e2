"""cmk-admin: the command line for the people who run rollouts. Talks to the app's HTTP API only (locally or in
Azure), with the standard library, so it installs anywhere Python does."""
