"""The MCP server (`loopengt mcp serve`): loopengt's API as MCP tools, resources and a prompt."""
