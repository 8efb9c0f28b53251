"""The servers gradwise's is measured against (started by benchmarks/serve_load.py).

    python benchmarks/serve_peers.py noop|plain|litserve --run RUN --port PORT [--threads N]

noop      a FastAPI POST endpoint that parses the JSON body and answers a constant: the HTTP
          stack's own limit (R_http).
plain     the endpoint a user writes by hand: a pydantic body, one forward pass per request
          (a sync route, so FastAPI runs it in its thread pool).
litserve  LitServe with its dynamic batching (max_batch_size, batch_timeout) on the same
          run's model, transform and calibrated probabilities.
All take {"instances": [{"pixels": ...}]} and bind 127.0.0.1.
(No `from __future__ import annotations`: FastAPI reads the local body model at run time.)
"""

import argparse
from typing import Any


def noop_app() -> Any:
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    app = FastAPI()

    @app.post("/v1/predict")
    async def predict(body: dict) -> JSONResponse:
        return JSONResponse({"ok": True})

    return app


def plain_app(run_dir: str) -> Any:
    import numpy as np
    import torch
    from fastapi import FastAPI
    from pydantic import BaseModel

    import gradwise

    run = gradwise.load(run_dir)

    class Instance(BaseModel):
        pixels: list[list[list[float]]] | list[list[float]]

    class Body(BaseModel):
        instances: list[Instance]

    app = FastAPI()

    @app.post("/v1/predict")
    def predict(body: Body) -> dict:
        x = np.asarray([i.pixels for i in body.instances], dtype=np.float32)
        with torch.inference_mode():
            probs = run.probabilities(run.logits(run.transform(x)))
        return {
            "predictions": [
                {"prediction": int(p.argmax()), "probabilities": p.round(6).tolist()} for p in probs
            ]
        }

    return app


try:  # LitServe pickles the API into its worker processes: the class lives at module level
    import litserve as ls

    class RunAPI(ls.LitAPI):
        """A gradwise run behind LitServe: the same transform, forward and probabilities."""

        def __init__(self, run_dir: str, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.run_dir = run_dir

        def setup(self, device: str) -> None:
            import gradwise

            self.run = gradwise.load(self.run_dir)

        def decode_request(self, request: dict) -> Any:
            import numpy as np

            return np.asarray(request["instances"][0]["pixels"], dtype=np.float32)

        def batch(self, inputs: list) -> Any:
            import numpy as np

            return np.stack(inputs)

        def predict(self, x: Any) -> Any:
            import torch

            with torch.inference_mode():
                return self.run.probabilities(self.run.logits(self.run.transform(x)))

        def unbatch(self, output: Any) -> list:
            return list(output)

        def encode_response(self, output: Any) -> dict:
            return {"prediction": int(output.argmax()), "probabilities": output.round(6).tolist()}

except ImportError:  # pip install litserve (the bench extra)
    ls = None


def litserve_server(run_dir: str, max_batch: int, batch_timeout_s: float) -> Any:
    if ls is None:
        raise SystemExit("litserve is not installed: pip install 'gradwise[bench]'")
    api = RunAPI(
        run_dir, max_batch_size=max_batch, batch_timeout=batch_timeout_s, api_path="/v1/predict"
    )
    return ls.LitServer(api, accelerator="cpu", workers_per_device=1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("which", choices=["noop", "plain", "litserve"])
    parser.add_argument("--run", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=2.0)
    args = parser.parse_args()
    import torch
    import uvicorn

    torch.set_num_threads(args.threads)
    if args.which == "litserve":
        server = litserve_server(args.run, args.max_batch, args.max_wait_ms / 1000)
        server.run(
            host="127.0.0.1", port=args.port, generate_client_file=False, log_level="warning"
        )
        return
    app = noop_app() if args.which == "noop" else plain_app(args.run)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
