"""`bertkit serve` as a real process on 127.0.0.1: each route, each error status, truncation, shutdown."""

import threading
import time

import httpx

from benchmarks.server_process import served

LONG_TEXT = " ".join(["the movie was good"] * 40)  # 160 words: far over the tiny model's 32 tokens


def post(server, route: str, body=None, content: bytes | None = None, timeout: float = 30) -> httpx.Response:
    if content is not None:
        headers = {"content-type": "application/json"}
        return httpx.post(server.url + route, content=content, headers=headers, timeout=timeout)
    return httpx.post(server.url + route, json=body, timeout=timeout)


def test_routes_metrics_page_and_truncation(classifier_dir):
    with served(classifier_dir, "--max-inputs", "4", "--max-body-bytes", "4000") as server:
        assert httpx.get(server.url + "/healthz").json() == {"status": "ok"}
        assert httpx.get(server.url + "/readyz").status_code == 200
        info = httpx.get(server.url + "/info").json()
        assert (info["task"], sorted(info["labels"]), info["max_len"]) == ("classify", ["neg", "pos"], 32)

        one = post(server, "/predict", {"inputs": "the movie was good"}).json()
        assert one["tokens_dropped"] == [0] and set(one["predictions"][0]["probabilities"]) == {"neg", "pos"}
        many = post(server, "/predict", {"inputs": ["good film", "awful plot", LONG_TEXT]}).json()
        assert len(many["predictions"]) == 3 and many["tokens_dropped"][:2] == [0, 0]
        assert many["tokens_dropped"][2] == 4 * 40 + 2 - 32  # 160 words and [CLS] [SEP], cut to 32

        assert "<title>bertkit</title>" in httpx.get(server.url + "/").text
        assert "/predict" in httpx.get(server.url + "/openapi.json").json()["paths"]
        docs = httpx.get(server.url + "/docs")
        assert docs.status_code == 200 and "<code>POST /predict</code>" in docs.text and "inputs" in docs.text
        assert "<script" not in docs.text and "http" not in docs.text.replace(server.url, "")  # nothing from elsewhere
        metrics = httpx.get(server.url + "/metrics").text
        assert 'bertkit_requests_total{route="/predict",status="200"} 2.0' in metrics
        assert "bertkit_batch_size_count" in metrics and "bertkit_queue_depth 0.0" in metrics

        errors = {
            "malformed JSON": (post(server, "/predict", content=b'{"inputs": '), 422, "invalid JSON"),
            "missing field": (post(server, "/predict", {"text": "a"}), 422, "inputs: Field required"),
            "wrong shape": (post(server, "/predict", {"inputs": [["a", "b"]]}), 422, "input 1: this model takes"),
            "empty": (post(server, "/predict", {"inputs": []}), 422, "inputs: empty"),
            "too many inputs": (post(server, "/predict", {"inputs": ["a"] * 5}), 413, "5 inputs, over the limit"),
            "body too large": (post(server, "/predict", {"inputs": ["a " * 3000]}), 413, "body over 4000 bytes"),
            "not an embedding model": (post(server, "/embed", {"inputs": ["a"]}), 422, "gives no embeddings"),
            "unknown route": (httpx.get(server.url + "/nothing"), 404, "Not Found"),
        }
        for case, (response, status, message) in errors.items():
            assert response.status_code == status, (case, response.text)
            assert message in response.json()["error"], (case, response.text)
        assert server.stop() == 0


def wait_for_queue(server, depth: int, seconds: float = 30.0) -> None:
    """Until the server's metrics show `depth` inputs waiting (polled, with a deadline)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        lines = httpx.get(server.url + "/metrics").text.splitlines()
        if any(line.split()[-1] == f"{depth}.0" for line in lines if line.startswith("bertkit_queue_depth ")):
            return
        time.sleep(0.01)
    raise AssertionError(f"no {depth} inputs waiting within {seconds} s")


def test_refused_over_long_inputs_and_timeouts(classifier_dir):
    with served(classifier_dir, "--truncate", "false", "--timeout", "0.001", "--max-wait-ms", "50") as server:
        refused = post(server, "/predict", {"inputs": ["good", LONG_TEXT]})
        assert refused.status_code == 413 and "input 2: 130 tokens over the model's 32" in refused.json()["error"]
        late = post(server, "/predict", {"inputs": "good"})
        assert late.status_code == 504 and "no answer within 0.001 s" in late.json()["error"]


def test_a_full_queue_is_503_with_retry_after(classifier_dir):
    with served(classifier_dir, "--max-queue", "1", "--max-wait-ms", "3000") as server:
        first: list[httpx.Response] = []
        waiting = threading.Thread(target=lambda: first.append(post(server, "/predict", {"inputs": "good"})))
        waiting.start()
        wait_for_queue(server, 1)  # the first request's batch is still gathering company
        refused = post(server, "/predict", {"inputs": "bad"})
        waiting.join()
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert "queue full" in refused.json()["error"] and first[0].status_code == 200


def test_sigterm_answers_what_is_in_flight_then_exits_0(classifier_dir):
    with served(classifier_dir, "--max-wait-ms", "1500") as server:
        answers: list[int] = []

        def client(i: int) -> None:
            answers.append(post(server, "/predict", {"inputs": [f"good {i}"]}).status_code)

        clients = [threading.Thread(target=client, args=(i,)) for i in range(8)]
        for thread in clients:
            thread.start()
        wait_for_queue(server, 8)  # all eight are waiting in one gathering batch
        assert server.stop() == 0
        for thread in clients:
            thread.join()
        assert answers == [200] * 8


def test_an_embedding_model_embeds_and_compares(minilm_dir):
    import bertkit

    with served(minilm_dir) as server:
        assert httpx.get(server.url + "/info").json()["embeds"] is True
        vectors = post(server, "/embed", {"inputs": ["A cat sits.", "서울은 한국의 수도이다."]}).json()["embeddings"]
        expected = bertkit.load(minilm_dir).embed(["A cat sits.", "서울은 한국의 수도이다."])
        assert abs(vectors[1][0] - float(expected[1][0])) < 1e-4 and len(vectors[0]) == 384
        pair = post(server, "/predict", {"inputs": [{"sentence1": "A cat sits.", "sentence2": "A kitten sits."}]})
        assert 0.5 < pair.json()["predictions"][0]["similarity"] <= 1.0
