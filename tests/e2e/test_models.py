"""``/v1/models``: OpenAI's shapes on the scripted model; the default configuration on the real one."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.support import MODEL, SCRIPTED_MODEL, assert_valid


def test_models_list_shows_the_served_model_in_openai_shape(
    scripted_http: httpx.Client, scripted_client: openai.OpenAI
) -> None:
    response = scripted_http.get("/models")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"].startswith("req-")
    assert_valid("ListModelsResponse", response.json())
    assert [m.id for m in scripted_client.models.list()] == [SCRIPTED_MODEL]


def test_model_retrieve_returns_one_model(
    scripted_http: httpx.Client, scripted_client: openai.OpenAI
) -> None:
    response = scripted_http.get(f"/models/{SCRIPTED_MODEL}")

    assert response.status_code == 200
    assert_valid("Model", response.json())
    model = scripted_client.models.retrieve(SCRIPTED_MODEL)
    assert (model.id, model.object, model.owned_by) == (SCRIPTED_MODEL, "model", "self-hosted")
    assert model.created > 1_600_000_000


def test_unknown_model_retrieve_is_404_model_not_found(
    scripted_http: httpx.Client, scripted_client: openai.OpenAI
) -> None:
    response = scripted_http.get("/models/no-such-model")

    assert response.status_code == 404
    assert_valid("ErrorResponse", response.json())
    assert response.json()["error"]["code"] == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        scripted_client.models.retrieve("no-such-model")


def test_without_a_models_file_the_default_model_is_served(http: httpx.Client, client: openai.OpenAI) -> None:
    card = http.get(f"/models/{MODEL}")

    assert [m.id for m in client.models.list()] == [MODEL]
    assert card.status_code == 200
    assert_valid("Model", card.json())
    assert (card.json()["owned_by"], card.json()["stats"]["n_ctx"]) == ("self-hosted", 4096)
