"""Open Inference Protocol v2 as a generic client speaks it: only the Python
standard library, tensors packed with struct. A real build/gmserve (or
$GMSERVE) serves the bundled models on a loopback port; for every model the
client reads GET /v2/models/{name}, and for every operation listed there it
builds the required inputs from the metadata alone (datatype, and the shape
with -1 as the batch), sends them as JSON and again with the binary tensor
data extension, and checks that both replies carry the outputs the metadata
names, with its datatypes and shapes (-1: one batch size for all), and the
same values. A client that reads only the protocol's own fields sends what
the top-level inputs list and gets what the outputs list. Skipped when
gmserve has not been built.
"""
import json
import math
import os
import struct
import unittest

from daemon import GMSERVE, HERE, Daemon

ROOT = os.path.join(HERE, "..", "..")
PACK = {"FP32": "f", "FP64": "d", "INT64": "q", "INT32": "i", "UINT8": "B", "UINT64": "Q"}
ROWS = 2


def values_for(name, datatype, count):
    """Plausible elements for an input the metadata names."""
    if name == "images":
        return [(i % 7) / 7 for i in range(count)] if datatype.startswith("FP") else [(i * 37) % 256 for i in range(count)]
    if name in ("latents", "code"):
        return [math.sin(i) * 0.5 for i in range(count)]
    if name == "label":
        return [i % 2 for i in range(count)]
    if name == "seed":
        return [42]
    if name == "n":
        return [ROWS]
    raise AssertionError(f"an input this test does not know: {name}")


@unittest.skipUnless(os.access(GMSERVE, os.X_OK), f"{GMSERVE} not built")
class OpenInferenceProtocol(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Daemon("gmserve-oip-")
        cls.server.start({m: os.path.join(ROOT, "models", m + ".safetensors") for m in ("nade", "vae", "gan")},
                         ready="/v2/health/ready")

    @classmethod
    def tearDownClass(cls):
        cls.server.close()

    def get(self, path):
        status, _, body = self.server.request(path)
        self.assertEqual(status, 200, body[:300])
        return json.loads(body)

    def post(self, path, body, headers):
        return self.server.request(path, body, headers)

    def request_for(self, meta, op, binary):
        """The inputs op requires (and its optional seed, so that the JSON and
        the binary reply draw the same numbers), from the metadata; -1 in a
        shape becomes ROWS."""
        inputs, blobs = [], []
        for t in op["inputs"] + [t for t in op["optional_inputs"] if t["name"] == "seed"]:
            name = t["name"]
            shape = [ROWS if d == -1 else d for d in t["shape"]]
            count = math.prod(shape)
            data = values_for(name, t["datatype"], count)
            entry = {"name": name, "shape": shape, "datatype": t["datatype"]}
            if binary:
                blob = struct.pack("<%d%s" % (count, PACK[t["datatype"]]), *data)
                entry["parameters"] = {"binary_data_size": len(blob)}
                blobs.append(blob)
            else:
                entry["data"] = data
            inputs.append(entry)
        req = {"id": op["name"], "inputs": inputs, "outputs": [{"name": t["name"]} for t in op["outputs"]]}
        if binary:
            req["parameters"] = {"binary_data_output": True}
        header = json.dumps(req).encode()
        if not binary:
            return header, {"Content-Type": "application/json"}
        return header + b"".join(blobs), {"Content-Type": "application/octet-stream",
                                          "Inference-Header-Content-Length": str(len(header))}

    def outputs_of(self, meta, op, status, headers, body):
        """The reply's tensors as {name: (datatype, shape, values)}, binary or JSON."""
        self.assertEqual(status, 200, body[:300])
        hl = headers.get("Inference-Header-Content-Length")
        head = json.loads(body[:int(hl)] if hl else body)
        self.assertEqual(head["model_name"], meta["name"])
        self.assertEqual(head["id"], op["name"])
        out, offset = {}, int(hl) if hl else 0
        for o in head["outputs"]:
            count = math.prod(o["shape"])
            if "data" in o:
                values = o["data"]
            else:
                size = o["parameters"]["binary_data_size"]
                values = list(struct.unpack_from("<%d%s" % (count, PACK[o["datatype"]]), body, offset))
                self.assertEqual(size, struct.calcsize("<%d%s" % (count, PACK[o["datatype"]])))
                offset += size
            self.assertEqual(len(values), count)
            out[o["name"]] = (o["datatype"], o["shape"], values)
        self.assertEqual(offset, len(body) if hl else 0)
        return out

    def test_server(self):
        meta = self.get("/v2")
        self.assertEqual(meta["name"], "gmserve")
        self.assertIn("binary_tensor_data", meta["extensions"])
        self.assertTrue(self.get("/v2/health/live")["live"])

    def test_every_operation_from_metadata_alone(self):
        ops_seen = set()
        for model in ("nade", "vae", "gan"):
            meta = self.get(f"/v2/models/{model}")
            self.assertEqual(self.get(f"/v2/models/{model}/ready"), {"name": model, "ready": True})
            for op in meta["operations"]:
                declared = {t["name"]: t for t in op["outputs"]}
                if op["name"] == meta["default_operation"]:  # the top level describes it
                    self.assertEqual((op["inputs"], op["outputs"]), (meta["inputs"], meta["outputs"]))
                with self.subTest(model=model, op=op["name"]):
                    replies = [self.outputs_of(meta, op, *self.post(f"/v2/models/{model}/infer",
                                                                     *self.request_for(meta, op, binary)))
                               for binary in (False, True)]
                    self.assertEqual(sorted(replies[0]), sorted(t["name"] for t in op["outputs"]))
                    rows = {shape[0] for _, shape, _ in replies[0].values()}
                    self.assertEqual(len(rows), 1, f"{model} {op['name']}: outputs disagree on the batch")
                    for name, (datatype, shape, values) in replies[0].items():
                        self.assertEqual(datatype, declared[name]["datatype"])
                        want = declared[name]["shape"]  # -1: the batch, the same for every output
                        self.assertEqual(shape, [shape[0] if d == -1 else d for d in want])
                        b_type, b_shape, b_values = replies[1][name]
                        self.assertEqual((b_type, b_shape), (datatype, shape))
                        # JSON prints FP32 with 9 digits and FP64 with 17: both round-trip exactly
                        if datatype == "FP32":
                            values = [struct.unpack("<f", struct.pack("<f", v))[0] for v in values]
                        self.assertEqual(values, b_values, f"{model} {op['name']} {name}")
                    ops_seen.add(op["name"])
        self.assertEqual(ops_seen, {"sample", "logp", "encode", "decode", "discriminate"})

    def test_the_top_level_alone(self):
        """A client that reads only the protocol's own fields (inputs and
        outputs), sends zeros for every input listed and asks no outputs
        gets the outputs listed."""
        for model in ("nade", "vae", "gan"):
            meta = self.get(f"/v2/models/{model}")
            inputs = [{"name": t["name"], "datatype": t["datatype"], "shape": [1 if d == -1 else d for d in t["shape"]],
                       "data": [0] * math.prod(1 if d == -1 else d for d in t["shape"])} for t in meta["inputs"]]
            status, _, body = self.post(f"/v2/models/{model}/infer", json.dumps({"inputs": inputs}).encode(), {})
            self.assertEqual(status, 200, body[:300])
            reply = json.loads(body)
            self.assertEqual([(o["name"], o["datatype"]) for o in reply["outputs"]],
                             [(t["name"], t["datatype"]) for t in meta["outputs"]], model)

    def test_errors_have_the_protocol_shape(self):
        status, _, body = self.post("/v2/models/vae/infer", b'{"inputs": [{"name": "images", "shape": [1, 3], '
                                    b'"datatype": "FP32", "data": [0, 0, 0]}]}', {"Content-Type": "application/json"})
        self.assertEqual(status, 400)
        self.assertIsInstance(json.loads(body)["error"], str)
        status, _, body = self.post("/v2/models/absent/infer", b'{"inputs": []}', {})
        self.assertEqual(status, 404)
        self.assertIn("absent", json.loads(body)["error"])


if __name__ == "__main__":
    unittest.main()
