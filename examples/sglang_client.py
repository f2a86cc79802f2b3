"""Talk to a LongCat-Flash SGLang server: chat (streamed), a completion, and SGLang's native /generate
with the log-probs of the prompt tokens.

    python examples/sglang_client.py [BASE_URL] [MESSAGE]      (BASE_URL default http://127.0.0.1:30000)
"""

import sys

import requests
from openai import OpenAI


def main(base_url: str, message: str) -> None:
    client = OpenAI(base_url=base_url.rstrip("/") + "/v1", api_key="none")
    model = client.models.list().data[0].id
    print(f"model: {model}\nuser: {message}\nassistant: ", end="", flush=True)
    stream = client.chat.completions.create(model=model, messages=[{"role": "user", "content": message}],
                                            max_tokens=32, temperature=0, stream=True)
    for chunk in stream:
        if chunk.choices:
            print(chunk.choices[0].delta.content or "", end="", flush=True)
    completion = client.completions.create(model=model, prompt="The keeper climbed the stairs", max_tokens=16,
                                           temperature=0)
    print(f"\ncompletion: {completion.choices[0].text!r}")
    r = requests.post(base_url.rstrip("/") + "/generate", timeout=300, json={
        "text": "Mixture of experts", "sampling_params": {"max_new_tokens": 4, "temperature": 0},
        "return_logprob": True, "logprob_start_len": 0, "return_text_in_logprobs": True})
    r.raise_for_status()
    meta = r.json()["meta_info"]
    print("prompt log-probs:", [(text, None if lp is None else round(lp, 3))
                                for lp, _id, text in meta["input_token_logprobs"]])


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:30000",
         sys.argv[2] if len(sys.argv) > 2 else "Hello, who are you?")
