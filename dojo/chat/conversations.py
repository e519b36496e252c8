"""The shared conversation set every family's fixtures are rendered over.

Each case is a dict: `name`, `messages`, `add_generation_prompt`, and optionally `tools` and
`kwargs` (extra template variables such as `enable_thinking`). The set covers what breaks
templates in practice: system prompts, multi-turn, generation prompts, tools and tool results,
reasoning, Unicode, whitespace, empty content and roles a family does not accept. A family
whose vendor has a convention of its own that the shared set cannot reach (GLM-4 reads tools from
a key on a message, not from the `tools` argument) adds cases in `FAMILY_CASES`.
"""

from __future__ import annotations

import copy
from typing import Any

# strftime_now is frozen at this moment for fixtures and README, so dated templates reproduce.
FROZEN_NOW = "2025-03-14T09:26:53"

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "The city, e.g. Paris."},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}

SYSTEM = {"role": "system", "content": "You are a concise assistant."}
HELLO = {"role": "user", "content": "Hello! Who are you?"}
HELLO_REPLY = {"role": "assistant", "content": "I am an assistant. How can I help?"}
ASK = {"role": "user", "content": "What is 2 + 3?"}
ANSWER = {"role": "assistant", "content": "2 + 3 = 5."}
WEATHER_Q = {"role": "user", "content": "What's the weather in Paris?"}
TOOL_RESULT = {
    "role": "tool",
    "tool_call_id": "call00001",
    "name": "get_weather",
    "content": '{"temperature": 18, "unit": "celsius"}',
}
WEATHER_A = {"role": "assistant", "content": "It is 18 °C in Paris."}


def _tool_call(arguments: Any, content: str | None) -> dict:
    call = {
        "id": "call00001",
        "type": "function",
        "function": {"name": "get_weather", "arguments": arguments},
    }
    message: dict = {"role": "assistant", "tool_calls": [call]}
    if content is not None:
        message["content"] = content
    return message


def _case(name: str, messages: list, gen: bool = False, **extra: Any) -> dict:
    case = {"name": name, "messages": messages, "add_generation_prompt": gen}
    case.update({k: v for k, v in extra.items() if v is not None})
    return case


def _cases() -> list[dict]:
    reasoning = {
        "role": "assistant",
        "reasoning_content": "The user greets me. I should introduce myself.",
        "content": "I am an assistant. How can I help?",
    }
    reasoning_2 = {
        "role": "assistant",
        "reasoning_content": "2 plus 3 is 5.",
        "content": "2 + 3 = 5.",
    }
    inline_think = {
        "role": "assistant",
        "content": "<think>\nThe user greets me.\n</think>\n\nI am an assistant. How can I help?",
    }
    second_call = _tool_call({"city": "Paris"}, None)
    second_call["tool_calls"].append(
        {
            "id": "call00002",
            "type": "function",
            "function": {"name": "get_weather", "arguments": {"city": "Lyon"}},
        }
    )
    return [
        _case("single_turn", [HELLO]),
        _case("single_turn_generation_prompt", [HELLO], gen=True),
        _case("single_exchange", [HELLO, HELLO_REPLY]),
        _case("system_single_turn", [SYSTEM, HELLO], gen=True),
        _case("system_multi_turn", [SYSTEM, HELLO, HELLO_REPLY, ASK, ANSWER]),
        _case("system_multi_turn_generation_prompt", [SYSTEM, HELLO, HELLO_REPLY, ASK], gen=True),
        _case("no_system_multi_turn", [HELLO, HELLO_REPLY, ASK, ANSWER]),
        _case("no_system_generation_prompt", [HELLO, HELLO_REPLY, ASK], gen=True),
        _case(
            "unicode_chinese",
            [
                {"role": "system", "content": "你是一个乐于助人的助手。"},
                {"role": "user", "content": "你好！请用一句话介绍北京。"},
                {"role": "assistant", "content": "北京是中国的首都 🏯，历史悠久。Ça va ? ñ ü ß"},
            ],
        ),
        _case(
            "unicode_no_system",
            [
                {"role": "user", "content": "用中文回答：1+1等于几？"},
                {"role": "assistant", "content": "等于 2。✅"},
                {"role": "user", "content": "Merci ! Ünïcödé?"},
            ],
            gen=True,
        ),
        _case(
            "whitespace",
            [
                {"role": "system", "content": "  Be brief.  \n"},
                {"role": "user", "content": "\n  Hello with spaces  \n"},
                {"role": "assistant", "content": "\n\n  An answer with spaces.  \n\n"},
                {"role": "user", "content": "\tTabbed\t"},
            ],
            gen=True,
        ),
        _case(
            "empty_content",
            [
                {"role": "user", "content": ""},
                {"role": "assistant", "content": ""},
                {"role": "user", "content": "Still there?"},
            ],
            gen=True,
        ),
        _case("empty_system", [{"role": "system", "content": ""}, HELLO, HELLO_REPLY]),
        _case("system_only", [SYSTEM], gen=True),
        _case("system_not_first", [HELLO, HELLO_REPLY, SYSTEM, ASK], gen=True),
        _case("consecutive_users", [HELLO, ASK, ANSWER]),
        _case("consecutive_assistants", [HELLO, HELLO_REPLY, ANSWER]),
        _case("assistant_first", [HELLO_REPLY, ASK, ANSWER]),
        _case("ends_with_assistant_generation_prompt", [HELLO, HELLO_REPLY], gen=True),
        _case(
            "unknown_role",
            [HELLO, {"role": "narrator", "content": "Meanwhile, in Paris."}, HELLO_REPLY],
        ),
        _case(
            "content_parts",
            [{"role": "user", "content": [{"type": "text", "text": "Describe Paris."}]}],
            gen=True,
        ),
        _case(
            "image_and_text_parts",
            [
                {"role": "system", "content": [{"type": "text", "text": "Describe briefly."}]},
                {
                    "role": "user",
                    "content": [{"type": "image"}, {"type": "text", "text": " What is this? "}],
                },
            ],
            gen=True,
        ),
        _case("tools_prompt", [WEATHER_Q], gen=True, tools=[WEATHER_TOOL]),
        _case("tools_with_system", [SYSTEM, WEATHER_Q], gen=True, tools=[WEATHER_TOOL]),
        _case(
            "tool_call_round_trip",
            [WEATHER_Q, _tool_call({"city": "Paris"}, None), TOOL_RESULT, WEATHER_A],
            tools=[WEATHER_TOOL],
        ),
        _case(
            "tool_call_with_content",
            [WEATHER_Q, _tool_call({"city": "Paris"}, "Let me check."), TOOL_RESULT, WEATHER_A],
            tools=[WEATHER_TOOL],
        ),
        _case(
            "tool_call_string_arguments",
            [WEATHER_Q, _tool_call('{"city": "Paris"}', ""), TOOL_RESULT, WEATHER_A],
            tools=[WEATHER_TOOL],
        ),
        _case(
            "tool_result_generation_prompt",
            [SYSTEM, WEATHER_Q, _tool_call({"city": "Paris"}, None), TOOL_RESULT],
            gen=True,
            tools=[WEATHER_TOOL],
        ),
        _case(
            "parallel_tool_calls",
            [WEATHER_Q, second_call, TOOL_RESULT, {**TOOL_RESULT, "tool_call_id": "call00002"}],
            gen=True,
            tools=[WEATHER_TOOL],
        ),
        _case(
            "tools_in_system_turn",
            [SYSTEM, WEATHER_Q],
            gen=True,
            tools=[WEATHER_TOOL],
            kwargs={"tools_in_user_message": False},
        ),
        _case(
            "builtin_tool_call",
            [
                {"role": "user", "content": "Search the web for the weather in Paris."},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "call00003",
                            "type": "function",
                            "function": {
                                "name": "brave_search",
                                "arguments": {"query": "weather in Paris"},
                            },
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call00003", "content": "Sunny, 18 °C."},
                {"role": "assistant", "content": "It is sunny in Paris."},
            ],
            kwargs={"builtin_tools": ["brave_search", "wolfram_alpha"]},
        ),
        _case("reasoning_field", [HELLO, reasoning]),
        _case("reasoning_inline_think", [HELLO, inline_think]),
        _case("reasoning_multi_turn", [SYSTEM, HELLO, reasoning, ASK, reasoning_2]),
        _case("reasoning_history_generation_prompt", [HELLO, reasoning, ASK], gen=True),
        _case("thinking_disabled", [ASK], gen=True, kwargs={"enable_thinking": False}),
        _case("thinking_enabled", [ASK], gen=True, kwargs={"enable_thinking": True}),
        _case("date_string", [SYSTEM, ASK], gen=True, kwargs={"date_string": "01 Feb 2025"}),
    ]


def _glm4_cases() -> list[dict]:
    """GLM-4's own tool convention (THUDM's demos): tools ride on a message's `tools` key, the
    assistant names the function in `metadata` and writes the arguments as its content, and the
    result comes back with the role `observation`."""
    all_kinds = [WEATHER_TOOL, {"type": "python"}, {"type": "simple_browser"}, {"type": "cogview"}]
    tools_system = {"role": "system", "content": "", "tools": all_kinds}
    call = {"role": "assistant", "metadata": "get_weather", "content": '{"city": "Paris"}'}
    observation = {"role": "observation", "content": TOOL_RESULT["content"]}
    return [
        _case("glm4_message_tools_prompt", [tools_system, WEATHER_Q], gen=True),
        _case(
            "glm4_message_tools_round_trip",
            [{**tools_system, "tools": [WEATHER_TOOL]}, WEATHER_Q, call, observation, WEATHER_A],
        ),
        _case(
            "glm4_observation_generation_prompt",
            [{**tools_system, "tools": [WEATHER_TOOL]}, WEATHER_Q, call, observation],
            gen=True,
        ),
        _case(
            "glm4_tools_on_a_user_message",
            [{**WEATHER_Q, "tools": [{"type": "retrieval"}, WEATHER_TOOL]}],
            gen=True,
        ),
    ]


# Family name -> its extra cases, rendered into that family's fixture after the shared set.
FAMILY_CASES = {"glm-4": _glm4_cases}


def conversation_cases(family: str | None = None) -> list[dict]:
    """A fresh deep copy of the shared cases, plus `family`'s own cases when it has some
    (templates and callers may not mutate the originals)."""
    extra = FAMILY_CASES[family]() if family in FAMILY_CASES else []
    return copy.deepcopy(_cases() + extra)


def example_conversation() -> list[dict]:
    """The short conversation shown for every family in `chat_templates/README.md`."""
    return copy.deepcopy([SYSTEM, HELLO, HELLO_REPLY, ASK, ANSWER])
