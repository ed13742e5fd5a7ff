"""A model call's recorded input and reply as ``{role, content}`` messages, whatever shape the
SDK integrations or an OpenTelemetry convention recorded them in (the run snapshot's
``messages()`` and ``LlmCall.messages``)."""

from __future__ import annotations

from typing import Any

__all__ = ["reply_messages", "to_messages"]


def to_messages(value: Any) -> list[dict[str, Any]]:
    """A model call's recorded input as ``{role, content}`` messages: a list of messages (OpenAI,
    Anthropic, OpenTelemetry GenAI ``parts``, OpenInference ``message.role`` / ``message.content``),
    a ``{"messages": [...]}`` request (with its ``system``, if any), OpenTelemetry's
    ``{"system_instructions", "input"}``; anything else (a prompt string, a dict) is one user
    message."""
    if value is None:
        return []
    if isinstance(value, list) and value and all(_is_message(m) for m in value):
        return [_message(m) for m in value]
    if isinstance(value, dict):
        if _is_message(value):
            return [_message(value)]
        if isinstance(value.get("messages"), list):
            system = value.get("system")
            rest = to_messages(value["messages"])
            return rest if system is None else [{"role": "system", "content": _content(system)}, *rest]
        if "system_instructions" in value and "input" in value:
            system = {"role": "system", "content": _content(value["system_instructions"])}
            return [system, *to_messages(value["input"])]
    return [{"role": "user", "content": value}]


def _is_message(m: Any) -> bool:
    return isinstance(m, dict) and ("role" in m or "message.role" in m)


def _message(m: dict[str, Any]) -> dict[str, Any]:
    role = m.get("role", m.get("message.role"))
    if "content" in m:
        content = m["content"]
    elif "parts" in m:
        content = m["parts"]
    else:
        content = m.get("message.content")
    return {"role": str(role), "content": _content(content)}


def _content(content: Any) -> Any:
    """Text where the content is text parts (Anthropic blocks, GenAI parts), else as recorded."""
    if isinstance(content, list) and content:
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict) and part.get("type") == "text":
                text = part.get("text", part.get("content"))
                if not isinstance(text, str):
                    return content
                texts.append(text)
            else:
                return content
        return "\n".join(texts)
    return content


def reply_messages(output: Any) -> list[dict[str, Any]]:
    """A model call's recorded reply as messages: its first choice, as an assistant message."""
    if output is None:
        return []
    if isinstance(output, list) and output:
        output = output[0]  # several choices: the first
    if _is_message(output):
        return [_message(output)]
    if isinstance(output, dict) and "content" in output:  # the SDK's reply with tool calls
        return [{"role": "assistant", "content": _content(output["content"])}]
    return [{"role": "assistant", "content": _content(output)}]
