"""Pydantic request models for ``/v1``: the validation rules, and later the source of the OpenAPI document."""
