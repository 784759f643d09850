"""One read -> encode -> emit pipeline, the cycle runner, and the first load, replay and reset built on it."""
