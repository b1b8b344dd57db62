"""What every pattern builds its graph from: the shared state and its reducers, the compile
context, the agent turn with its policy, model and tool calls, gates and structured output."""
