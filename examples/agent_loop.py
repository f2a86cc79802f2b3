"""An agent loop: a LongCat model served by vLLM or SGLang (with our tool-call and reasoning parsers,
see docs/agents.md) calls local Python functions until it answers.

    python examples/agent_loop.py http://127.0.0.1:8000/v1 [--question TEXT] [--max-steps N]

Prints each step: the reasoning, the text, every tool call with its result, and the final answer.
"""

import argparse
import datetime
import json

from openai import OpenAI


def get_weather(city: str, days: int) -> dict:
    """A stand-in forecast (no network): the same answer for every city."""
    return {"city": city, "forecast": ["sun", "rain", "sun", "cloud"][:days]}


def get_time(zone: str) -> str:
    if zone.upper() != "UTC":
        return f"unknown time zone {zone!r}; only UTC is supported"
    return datetime.datetime.now(datetime.timezone.utc).strftime("%H:%M")


FUNCTIONS = {"get_weather": get_weather, "get_time": get_time}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather forecast for a city",
                                      "parameters": {"type": "object", "properties": {
                                          "city": {"type": "string"}, "days": {"type": "integer"}},
                                          "required": ["city", "days"]}}},
    {"type": "function", "function": {"name": "get_time", "description": "Current time in a time zone",
                                      "parameters": {"type": "object", "properties": {
                                          "zone": {"type": "string"}}, "required": ["zone"]}}},
]


def call_tool(name: str, arguments: str) -> str:
    if name not in FUNCTIONS:
        return json.dumps({"error": f"no tool named {name!r}"})
    try:
        return json.dumps(FUNCTIONS[name](**json.loads(arguments)))
    except (TypeError, ValueError) as e:
        return json.dumps({"error": f"bad arguments for {name}: {e}"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("base_url", help="the server's OpenAI base URL, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--question", default="Weather in Paris for 3 days, and the time in UTC?")
    parser.add_argument("--max-steps", type=int, default=5)
    args = parser.parse_args()

    client = OpenAI(base_url=args.base_url, api_key="none")
    model = client.models.list().data[0].id
    messages = [{"role": "user", "content": args.question}]
    print(f"model: {model}\nuser: {args.question}")
    for step in range(1, args.max_steps + 1):
        message = client.chat.completions.create(model=model, messages=messages, tools=TOOLS, temperature=0,
                                                 max_tokens=512).choices[0].message
        reasoning = getattr(message, "reasoning_content", None) or getattr(message, "reasoning", None)
        print(f"--- step {step}")
        if reasoning:
            print(f"reasoning: {reasoning.strip()}")
        if message.content:
            print(f"assistant: {message.content.strip()}")
        if not message.tool_calls:
            return
        messages.append({"role": "assistant", "content": message.content or "",
                         "tool_calls": [c.model_dump(include={"id", "type", "function"}) for c in message.tool_calls]})
        for call in message.tool_calls:
            result = call_tool(call.function.name, call.function.arguments)
            print(f"tool call {call.function.name}({call.function.arguments}) -> {result}")
            messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
    print(f"stopped after {args.max_steps} steps")


if __name__ == "__main__":
    main()
