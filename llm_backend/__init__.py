"""The engine app: configured models, their schedulers and the llama-cpp-python adapter.

Nothing here imports ``django.http``, the pydantic wire schemas or ``openai_api``; only
``engine.py`` imports ``llama_cpp``.
"""
