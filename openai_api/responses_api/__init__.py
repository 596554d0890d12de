"""OpenAI's Responses API: ``/v1/responses`` created, streamed, stored, chained and read back.

- :mod:`.schemas`: the request body (pydantic, OpenAI's field names) and its refusals;
- :mod:`.items`: input items checked, given ids and turned into the backend's chat messages;
- :mod:`.objects`: the response object, its output items and usage, as OpenAI writes them;
- :mod:`.events`: backend events turned into the response's stream events (and its final state);
- :mod:`.store`: stored responses, owned by the key that made them, and their retention;
- :mod:`.views`: the four endpoints.

Generation goes through :mod:`openai_api.services` and the backend contract only, so it works
on every kind of backend.
"""
