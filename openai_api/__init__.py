"""The HTTP interface: OpenAI's wire format over Django async views."""
