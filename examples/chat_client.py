"""Chat with any OpenAI-compatible LongCat-Flash server: python chat_client.py BASE_URL [MESSAGE]."""

import sys

from openai import OpenAI


def chat(base_url: str, message: str, max_tokens: int = 32) -> str:
    client = OpenAI(base_url=base_url.rstrip("/") + "/v1", api_key="none")
    model = client.models.list().data[0].id
    reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": message}],
                                           max_tokens=max_tokens, temperature=0)
    return reply.choices[0].message.content


if __name__ == "__main__":
    print(chat(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "Hello, who are you?"))
