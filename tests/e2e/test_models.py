from __future__ import annotations

import httpx
import openai
import pytest

from tests.support import MODEL, assert_valid


def test_models_list_shows_the_default_model_in_openai_shape(
    http: httpx.Client, client: openai.OpenAI
) -> None:
    response = http.get("/models")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"].startswith("req-")
    assert_valid("ListModelsResponse", response.json())
    assert [m.id for m in client.models.list()] == [MODEL]


def test_model_retrieve_returns_one_model(http: httpx.Client, client: openai.OpenAI) -> None:
    response = http.get(f"/models/{MODEL}")

    assert response.status_code == 200
    assert_valid("Model", response.json())
    model = client.models.retrieve(MODEL)
    assert (model.id, model.object, model.owned_by) == (MODEL, "model", "self-hosted")
    assert model.created > 1_600_000_000


def test_unknown_model_retrieve_is_404_model_not_found(http: httpx.Client, client: openai.OpenAI) -> None:
    response = http.get("/models/no-such-model")

    assert response.status_code == 404
    assert_valid("ErrorResponse", response.json())
    assert response.json()["error"]["code"] == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")
