"""Reliability, issue 26 (round 2, part a): each section is one item of the issue, numbered as there.

Every network test talks to a server on 127.0.0.1 only, with bounded loops; no test sleeps to wait for
something to happen (a server that trickles bytes sleeps between them, the client is what is measured).
"""
from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from pipelines.cli import main
from pipelines.data.image_files import write_png

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parents[1]
EVAL_ARGS = ["--no-lpips", "--params", str(REPO / "params.yaml")]


def _image(seed: int, h: int = 32, w: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _pairs(folder: Path, names: list[str], same: bool = False) -> Path:
    """A flat input/target test set; ``same``: the blurred image is the sharp one."""
    for i, name in enumerate(names):
        sharp = _image(i)
        write_png(folder / "target" / name, sharp)
        write_png(folder / "input" / name, sharp if same else np.roll(sharp, 1, axis=1))
    return folder


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny MIMO-UNet without prior: the cheapest model deblur and evaluate accept."""
    from models.deblur_model import build_deblur_model, model_payload
    from pipelines.core.checkpoint_files import save_checkpoint

    torch.manual_seed(0)
    model = build_deblur_model({"backbone": "mimo_unet", "scale": "tiny", "prior_mode": "none"})
    return save_checkpoint(tmp_path_factory.mktemp("model") / "model.pt", model_payload(model))


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# item 1: deblur -o never overwrites an input, and no two inputs share an output ----------------------

def test_deblur_into_the_input_folder_never_overwrites_an_input(tmp_path):
    from pipelines.evaluation.photo_restoration import collect_inputs, plan_outputs

    photos = tmp_path / "photos"
    write_png(photos / "a.png", _image(1))
    write_png(photos / "a_deblurred.png", _image(2))  # e.g. last run's output, now an input too
    inputs = collect_inputs([photos])
    targets = [job.target.resolve() for job in plan_outputs(inputs, photos)]
    assert not set(targets) & {src.resolve() for src, _ in inputs}, targets
    assert len(set(targets)) == len(targets)


def test_deblur_gives_every_input_its_own_output(tmp_path, checkpoint, capsys):
    photos = tmp_path / "photos"
    for i, name in enumerate(("a.jpg", "a.png", "a.jpg.png")):
        photos.mkdir(exist_ok=True)
        from PIL import Image

        Image.fromarray(_image(i)).save(photos / name, format="JPEG" if name.endswith(".jpg") else "PNG")
    before = _tree(photos)
    out = tmp_path / "out"
    assert main(["deblur", str(photos), "-o", str(out), "--checkpoint", str(checkpoint), "--device", "cpu"]) == 0
    assert "restored 3 of 3" in capsys.readouterr().out
    assert len(list(out.iterdir())) == 3, sorted(p.name for p in out.iterdir())
    assert _tree(photos) == before
    # the same three into their own folder: three new files, not one input touched
    assert main(["deblur", str(photos), "-o", str(photos), "--checkpoint", str(checkpoint), "--device", "cpu"]) == 0
    after = _tree(photos)
    assert {k: after[k] for k in before} == before and len(after) == 6, sorted(after)


# item 2: a GoPro scene folder linked to another scene is read once --------------------------------------

def test_a_gopro_scene_linked_to_another_is_read_once(tmp_path):
    from pipelines.data.pairs import find_pairs

    root = tmp_path / "test"
    for i in range(2):
        write_png(root / "A" / "blur" / f"{i}.png", _image(i))
        write_png(root / "A" / "sharp" / f"{i}.png", _image(i + 10))
    (root / "B").symlink_to("A", target_is_directory=True)  # a second name for scene A
    write_png(root / "C" / "blur" / "0.png", _image(5))
    write_png(root / "C" / "sharp" / "0.png", _image(6))
    with pytest.warns(UserWarning, match=r"B: skipped: symbolic link to a folder already read"):
        pairs = find_pairs(root)
    assert [p.name for p in pairs] == ["A/0.png", "A/1.png", "C/0.png"]


# item 3: two evaluations into one --out: the second fails at once, the first is left alone --------------

def test_a_second_evaluation_into_the_same_out_fails_at_once(tmp_path, monkeypatch):
    from models.deblur_model import build_deblur_model
    from pipelines.core.errors import UserError
    from pipelines.data.pairs import find_pairs
    from pipelines.evaluation import evaluator as ev

    data = _pairs(tmp_path / "test", [f"{i}.png" for i in range(4)])
    out = tmp_path / "eval"
    model = build_deblur_model({"backbone": "mimo_unet", "scale": "tiny", "prior_mode": "none"})
    halfway, go_on = threading.Event(), threading.Event()
    real = ev._evaluate_pair

    def paused(setup, tmp, index, pair, bar):
        if index == 2 and threading.current_thread().name == "first":
            halfway.set()
            assert go_on.wait(60)
        return real(setup, tmp, index, pair, bar)

    monkeypatch.setattr(ev, "_evaluate_pair", paused)
    run = dict(dataset="t", data_root=data, save_images=True, crop_images=4, progress=False)
    failures = []

    def first():
        try:
            ev.evaluate_model(model, find_pairs(data), out, **run)
        except BaseException as err:  # noqa: BLE001 - reported below
            failures.append(err)

    thread = threading.Thread(target=first, name="first")
    thread.start()
    try:
        assert halfway.wait(60)
        temporaries = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".eval."))
        with pytest.raises(UserError, match=f"{out}: another evaluation is writing it"):
            ev.evaluate_model(model, find_pairs(data), out, **run)
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".eval.")) == temporaries
    finally:
        go_on.set()
        thread.join(60)
    assert not failures, failures
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_images"] == 4 and len(list((out / "images").iterdir())) == 4
    assert len(list((out / "crops").iterdir())) == 12
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval", "test"]  # no lock file, no temporary left


# item 4: fetch --if-active replaces only a folder fetch wrote ---------------------------------------------

def test_fetch_if_active_never_replaces_a_folder_it_did_not_write(tmp_path, capsys):
    out = tmp_path / "mine"
    (out / "sub").mkdir(parents=True)
    (out / "thesis.tex").write_text("years of work")
    (out / "sub" / "data.csv").write_text("1,2")
    before = _tree(out)
    argv = ["fetch", "gopro", "--if-active", "--profile", "cpu", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "refusing to replace it" in err and "Traceback" not in err
    assert _tree(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["mine"]
    # what fetch wrote is replaced: its placeholder, and a dataset it fetched (manifest.json)
    placeholder = tmp_path / "placeholder"
    assert main([*argv[:-1], str(placeholder)]) == 0 and main([*argv[:-1], str(placeholder)]) == 0
    fetched = tmp_path / "fetched"
    (fetched / "test").mkdir(parents=True)
    (fetched / "manifest.json").write_text(json.dumps({"dataset": "gopro", "source_kind": "download"}))
    assert main([*argv[:-1], str(fetched)]) == 0
    assert sorted(p.name for p in fetched.iterdir()) == ["NOT_FETCHED.txt"]


# item 5: a folder named .OUT.old beside an output is the user's: never deleted ----------------------------

@pytest.mark.parametrize("existing", [False, True])
def test_a_users_dot_old_folder_beside_an_output_survives(tmp_path, existing):
    from pipelines.core.files import atomic_dir

    out = tmp_path / "site"
    mine = tmp_path / ".site.old"
    (mine / "sub").mkdir(parents=True)
    (mine / "sub" / "keep.txt").write_text("my backup")
    if existing:
        out.mkdir()
        (out / "index.html").write_text("previous")
    with atomic_dir(out, marker="index.html") as tmp:
        (tmp / "index.html").write_text("new")
    assert (out / "index.html").read_text() == "new"
    assert (mine / "sub" / "keep.txt").read_text() == "my backup"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".site.old", "site"]


def test_evaluate_leaves_a_users_dot_old_folder_alone(tmp_path, checkpoint):
    data = _pairs(tmp_path / "test", ["0.png"])
    (tmp_path / ".eval.old").mkdir()
    (tmp_path / ".eval.old" / "notes.txt").write_text("mine")
    for _ in range(2):  # a new output, then one replaced
        assert main(["evaluate", "--checkpoint", str(checkpoint), "--data", str(data), "--out",
                     str(tmp_path / "eval"), *EVAL_ARGS]) == 0
    assert (tmp_path / ".eval.old" / "notes.txt").read_text() == "mine"


# item 11: a legal long image name (240 bytes) is evaluated and deblurred; a name too long for the ---------
# outputs is refused before any work (evaluate) or reported as such (deblur)

LONG = "x" * 236 + ".png"  # 240 bytes: legal (NAME_MAX 255), but not with the temporary-name decoration


def test_a_long_image_name_is_evaluated_and_deblurred(tmp_path, checkpoint, capsys):
    data = _pairs(tmp_path / "test", [LONG, "b.png"])
    out = tmp_path / "eval"
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--data", str(data), "--out", str(out),
                 "--save-images", *EVAL_ARGS]) == 0
    assert (out / "images" / LONG).is_file() and (out / "crops" / f"{LONG[:-4]}_restored.png").is_file()
    restored = tmp_path / "restored"
    assert main(["deblur", str(data / "input"), "-o", str(restored), "--checkpoint", str(checkpoint),
                 "--device", "cpu"]) == 0
    assert (restored / LONG).is_file() and "restored 2 of 2" in capsys.readouterr().out


def test_an_output_name_over_the_limit_is_named_before_any_work(tmp_path, checkpoint, capsys, monkeypatch):
    import pipelines.evaluation.evaluator as ev

    name = "y" * 246 + ".png"  # 250 bytes: its crops (<stem>_restored.png) would be 259
    data = _pairs(tmp_path / "test", [name])
    monkeypatch.setattr(ev, "restore_image", lambda *a, **k: pytest.fail("inference started"))
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--data", str(data), "--out",
                 str(tmp_path / "eval"), *EVAL_ARGS]) == 2
    err = capsys.readouterr().err
    assert str(data / "input" / name) in err and "too long" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test"]
    # deblur into the input folder: <stem>_deblurred.png would be 256 bytes: that file is reported, by name
    monkeypatch.undo()
    assert main(["deblur", str(data / "input"), "-o", str(data / "input"), "--checkpoint", str(checkpoint),
                 "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert str(data / "input" / name) in err and "too long" in err and "restoration failed" not in err


# item 13: an animated PNG / multi-page TIFF is refused naming the file (deblur: skipped, with the reason) --

def _multi_frame(path: Path, fmt: str) -> Path:
    from PIL import Image

    frames = [Image.fromarray(_image(i)) for i in range(3)]
    path.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(path, format=fmt, save_all=True, append_images=frames[1:])
    return path


@pytest.mark.parametrize("fmt,name", [("PNG", "anim.png"), ("TIFF", "pages.tif")])
def test_a_multi_frame_image_is_refused_naming_the_file(tmp_path, checkpoint, capsys, fmt, name):
    from pipelines.data.image_files import ImageReadError, read_image, read_image_size

    path = _multi_frame(tmp_path / "in" / name, fmt)
    for reader in (read_image, read_image_size):
        with pytest.raises(ImageReadError, match=rf"{path}: .*3 frames"):
            reader(path)
    write_png(tmp_path / "in" / "single.png", _image(9))
    out = tmp_path / "out"
    assert main(["deblur", str(tmp_path / "in"), "-o", str(out), "--checkpoint", str(checkpoint),
                 "--device", "cpu"]) == 1
    captured = capsys.readouterr()
    assert "restored 1 of 2" in captured.out and f"{path}: " in captured.err and "3 frames" in captured.err
    assert sorted(p.name for p in out.iterdir()) == ["single.png"]


def test_a_jpeg_with_embedded_pictures_is_still_read(tmp_path):
    """Phones write MPO (a JPEG followed by more pictures: a preview, a depth map): the first is the photo."""
    from PIL import Image

    from pipelines.data.image_files import read_image

    path = tmp_path / "phone.jpg"
    Image.fromarray(_image(1)).save(path, format="MPO", save_all=True, append_images=[Image.fromarray(_image(2))])
    image, info = read_image(path)
    assert image.shape == (32, 32, 3) and info.format == "MPO"


# item 12: any image name round-trips through scores.csv; a truncated or malformed file is named ---------

NAMES = ["plain.png", "with\rreturn.png", "with\nnewline.png", 'a,"quoted",name.png', " lead.png", "NA",
         "ünï cødé.png", "scene/x.png"]


def _rows(names, shift: float = 0.0) -> list[dict]:
    return [{"name": n, "seed": None, "psnr": 20.0 + i + shift, "ssim": 0.5, "ssim3d": 0.4, "lpips": None,
             "seconds": 0.1} for i, n in enumerate(names)]


def test_every_image_name_round_trips_through_the_score_files(tmp_path):
    from pipelines.evaluation.score_files import compare_runs, read_scores, rows_to_csv

    for side, shift in (("method", 1.0), ("baseline", 0.0)):
        (tmp_path / side).mkdir()
        (tmp_path / side / "scores.csv").write_text(rows_to_csv(_rows(NAMES, shift)))
    frame = read_scores(tmp_path / "method")
    assert frame["name"].tolist() == NAMES and frame["psnr"].tolist() == [21.0 + i for i in range(len(NAMES))]
    assert frame["lpips"].isna().all() and frame["seed"].isna().all()
    result = compare_runs(tmp_path / "method", tmp_path / "baseline", resamples=200)  # what `tables` does
    assert result["mean_gain"] == pytest.approx(1.0)


@pytest.mark.parametrize("damage,line,what", [
    (lambda text: text[: text.rindex("\n", 0, len(text) - 1) + 12], 4, "expected 7 fields, found"),  # cut mid-row
    (lambda text: text.replace("21.0", "21.0x"), 2, "psnr"),  # not a number
    (lambda text: text + '"never closed,NA\n', 5, "quote"),  # an open quote: the file ends inside a name
    (lambda text: "name,psnr\n" + text.split("\n", 1)[1], 1, "missing columns"),
])
def test_a_damaged_scores_file_is_named_with_its_line(tmp_path, damage, line, what):
    from pipelines.core.errors import UserError
    from pipelines.evaluation.score_files import read_scores, rows_to_csv

    path = tmp_path / "scores.csv"
    path.write_text(damage(rows_to_csv(_rows(["a.png", "b.png", "c.png"], 1.0))))
    with pytest.raises(UserError) as err:
        read_scores(path)
    assert f"{path}" in str(err.value) and f"line {line}" in str(err.value) and what in str(err.value), err.value


# item 29a: an identical pair scores PSNR 100 dB (the cap), summary.json is strict JSON, MLflow gets finite --

def _strict_json(text: str):
    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_an_identical_pair_gives_a_finite_capped_psnr_everywhere(tmp_path, checkpoint):
    from pipelines.evaluation.image_metrics import MAX_PSNR_DB, psnr
    from pipelines.tracking.evaluation_records import evaluation_metrics

    assert MAX_PSNR_DB == 100.0 and psnr(_image(1), _image(1)) == 100.0
    data = _pairs(tmp_path / "test", ["0.png", "1.png"], same=True)  # the blurred input is the sharp image
    out = tmp_path / "eval"
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--data", str(data), "--out", str(out),
                 *EVAL_ARGS]) == 0
    summary = _strict_json((out / "summary.json").read_text())
    assert summary["input_metrics"]["psnr"]["mean"] == 100.0
    assert "inf" not in (out / "input_scores.csv").read_text().lower()
    logged = evaluation_metrics(summary, "t")
    assert logged["test/t/psnr_blurred_input"] == 100.0
    assert all(np.isfinite(v) for v in logged.values())
    # an older summary.json holding Infinity: MLflow gets nothing for it rather than 1.8e308
    old = {"metrics": {"psnr": {"mean": float("inf")}}, "input_metrics": {"psnr": {"mean": float("inf")}}}
    assert "test/t/psnr" not in evaluation_metrics(old, "t") and "test/t/psnr_blurred_input" not in \
        evaluation_metrics(old, "t")


# --------------------------------------------------------------------------------------- downloads
# A server on 127.0.0.1: ``server.routes[path] = fn(handler)`` answers a GET; ``server.stop`` is set at the end
# of the test so that a handler that trickles or waits returns at once.

@pytest.fixture
def server():
    import http.server

    routes: dict = {}
    stop = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        timeout = 10  # bounds every socket read of the handler

        def do_GET(self):
            if self.path not in routes:
                self.send_error(404, "not found")
                return
            try:
                routes[self.path](self)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up: what several tests want

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield type("Server", (), {"base": f"http://127.0.0.1:{httpd.server_address[1]}", "routes": routes,
                                  "stop": stop})
    finally:
        stop.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _send(handler, body: bytes, length: bool = True, status: int = 200) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", "application/octet-stream")
    if length:
        handler.send_header("Content-Length", str(len(body)))
    else:
        handler.close_connection = True  # the body ends when the connection does (HTTP/1.0 style)
    handler.end_headers()
    handler.wfile.write(body)


def _quiet(_msg: str) -> None:
    pass


# item 8: a redirect is followed to http(s) only, and the error names where it led ------------------------

def test_a_redirect_to_ftp_is_refused_naming_the_target(tmp_path, server):
    import socket

    from pipelines.core.errors import UserError
    from pipelines.data.fetching.download import download

    ftp = socket.socket()
    ftp.bind(("127.0.0.1", 0))
    ftp.listen(4)
    target = f"ftp://127.0.0.1:{ftp.getsockname()[1]}/GOPRO_Large.zip"

    def redirect(handler):
        handler.send_response(302)
        handler.send_header("Location", target)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    server.routes["/a.zip"] = redirect
    try:
        with pytest.raises(UserError) as err:
            download(f"{server.base}/a.zip", tmp_path / "a.zip", timeout=1, retries=0, log=_quiet)
        ftp.setblocking(False)
        with pytest.raises(BlockingIOError):  # nobody ever connected to the ftp "server"
            ftp.accept()[0].close()
    finally:
        ftp.close()
    assert target in str(err.value) and f"{server.base}/a.zip" in str(err.value) and "http(s)" in str(err.value)
    assert list(tmp_path.iterdir()) == []


# item 25: a download is capped; over the cap it stops, clearly, and removes its partial file -------------

@pytest.mark.parametrize("announced", [False, True])
def test_a_download_over_the_cap_is_stopped_and_its_part_removed(tmp_path, server, announced):
    from pipelines.core.errors import UserError
    from pipelines.data.fetching.download import download

    body = bytes(range(256)) * (3 * 4096)  # 3 MiB
    server.routes["/big.zip"] = lambda handler: _send(handler, body, length=announced)
    part = tmp_path / ".big.zip.part"
    with pytest.raises(UserError) as err:
        download(f"{server.base}/big.zip", tmp_path / "big.zip", timeout=5, part=part, retries=0, log=_quiet,
                 max_bytes=1_000_000, max_key="params fetch.datasets.x.max_download_gb")
    message = str(err.value)
    assert f"{server.base}/big.zip" in message and "1000000" in message and "max_download_gb" in message
    assert list(tmp_path.iterdir()) == []  # no .part, no .part.json, no lock file


# item 26: a trickling server (headers or body) is dropped after about --timeout seconds ----------------

@pytest.mark.parametrize("slow", ["body", "headers"])
def test_a_trickling_server_is_dropped_after_the_timeout(tmp_path, server, slow):
    import time

    from pipelines.core.errors import UserError
    from pipelines.data.fetching.download import download

    def trickle(handler):  # 50 bytes a second, at most 8 s (the server gives up then, whatever happens)
        if slow == "headers":
            handler.wfile.write(b"HTTP/1.1 200 OK\r\n")
            stream = b"X-Padding: " + b"a" * 1000
        else:
            handler.send_response(200)
            handler.send_header("Content-Length", "100000")
            handler.end_headers()
            stream = b"b" * 1000
        for byte in stream[:400]:
            if server.stop.wait(0.02):
                return
            handler.wfile.write(bytes([byte]))
            handler.wfile.flush()
        handler.close_connection = True

    server.routes["/slow.zip"] = trickle
    part = tmp_path / ".slow.zip.part"
    started = time.monotonic()
    with pytest.raises(UserError) as err:
        download(f"{server.base}/slow.zip", tmp_path / "slow.zip", timeout=1, part=part, retries=3,
                 retry_wait=0.01, log=_quiet)
    assert time.monotonic() - started < 6, "a trickle must not hold the download for long"
    assert "too slow" in str(err.value) and f"{server.base}/slow.zip" in str(err.value), err.value


# item 28: two fetches of one archive: the second fails at once, the first finishes intact ------------------

def test_a_second_download_of_the_same_archive_fails_at_once(tmp_path, server):
    import hashlib

    from pipelines.core.errors import UserError
    from pipelines.data.fetching.download import download_first

    body = bytes(range(256)) * 4096  # 1 MiB
    halfway, go_on, requests = threading.Event(), threading.Event(), []

    def pausing(handler):
        requests.append(1)
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body[: len(body) // 2])
        handler.wfile.flush()
        if len(requests) == 1:  # the first download waits half-way until the second has been tried
            halfway.set()
            go_on.wait(30)
        handler.wfile.write(body[len(body) // 2:])

    server.routes["/a.zip"] = pausing
    part = tmp_path / ".a.zip.part"
    results = []

    def fetch(dest: Path):
        try:
            results.append(download_first("a", [f"{server.base}/a.zip"], dest, part, None, timeout=10, retries=0,
                                          log=_quiet))
        except BaseException as err:  # noqa: BLE001 - checked below
            results.append(err)

    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    first = threading.Thread(target=fetch, args=(tmp_path / "one" / "a.zip",))
    first.start()
    try:
        assert halfway.wait(30)
        with pytest.raises(UserError, match=rf"{part}: another download is writing it"):
            download_first("a", [f"{server.base}/a.zip"], tmp_path / "two" / "a.zip", part, None, timeout=10,
                           retries=0, log=_quiet)
        assert len(requests) == 1  # the second never asked the server
    finally:
        go_on.set()
        first.join(30)
    assert results == [(f"{server.base}/a.zip", hashlib.sha256(body).hexdigest())], results
    assert (tmp_path / "one" / "a.zip").read_bytes() == body
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "two"]  # no part, no lock file left


# item 29c: caps sized to the real datasets (per dataset, from the registry) and a compression-ratio guard --

def test_each_known_dataset_gets_caps_sized_to_its_real_archive():
    from pipelines.core.config import DatasetSource, load_params

    fetch = load_params(REPO / "params.yaml", profile="paper").fetch
    caps = {name: (spec.max_download_gb, spec.max_unpacked_gb) for name, spec in fetch.datasets.items()}
    assert caps["gopro"] == (14.0, 16.0)  # GOPRO_Large.zip is 9.54 GB of PNG frames
    assert caps["realblur_j"] == caps["realblur_r"] == (18.0, 22.0)  # RealBlur.tar.gz is 13.1 GB
    assert all(down and unpacked and unpacked < fetch.max_unpacked_gb for down, unpacked in caps.values())
    unknown = DatasetSource(url="https://a/x.zip", archive="other.zip", out_dir="d")
    assert unknown.max_download_gb is None and unknown.max_unpacked_gb is None  # fetch.max_unpacked_gb applies
    mine = DatasetSource(url="https://a/x.zip", archive="GOPRO_Large.zip", out_dir="d", max_unpacked_gb=40)
    assert (mine.max_download_gb, mine.max_unpacked_gb) == (14.0, 40.0)  # params win over the registry


def _bomb(path: Path, fmt: str, size: int = 80 << 20) -> Path:
    """An archive of ``size`` zero bytes (one member) and a real image: ratio about 1000."""
    import tarfile
    import zipfile

    if fmt == "zip":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("GOPRO_Large/train/S/sharp/0.png", b"x")
            with zf.open("GOPRO_Large/train/S/blur/0.png", "w", force_zip64=True) as member:
                for _ in range(size >> 20):
                    member.write(bytes(1 << 20))
    else:
        with tarfile.open(path, "w:gz", compresslevel=1) as tf:
            info = tarfile.TarInfo("GOPRO_Large/train/S/sharp/0.png")
            info.size = 1
            tf.addfile(info, io.BytesIO(b"x"))
            info = tarfile.TarInfo("GOPRO_Large/train/S/blur/0.png")
            info.size = size

            class Zeros(io.RawIOBase):
                def readable(self):
                    return True

                def readinto(self, b):
                    b[:] = bytes(len(b))
                    return len(b)

            tf.addfile(info, io.BufferedReader(Zeros()))
    return path


@pytest.mark.parametrize("fmt", ["zip", "tar.gz"])
def test_an_archive_that_expands_far_beyond_png_data_is_refused_before_it_is_written(tmp_path, fmt):
    from pipelines.core.errors import UserError
    from pipelines.data.fetching.unpack import unpack_archive

    archive = _bomb(tmp_path / f"bomb.{fmt}", fmt)
    assert archive.stat().st_size < 1 << 20
    dest = tmp_path / "raw"
    with pytest.raises(UserError) as err:
        unpack_archive(archive, dest)  # the default limits: well under the 200 GB of fetch.max_unpacked_gb
    assert str(archive) in str(err.value) and "compression ratio" in str(err.value), err.value
    assert sum(p.stat().st_size for p in dest.rglob("*") if p.is_file()) <= 1  # the bomb member never written


def test_the_per_dataset_download_cap_comes_from_params(tmp_path, server):
    from pipelines.core.config import DatasetSource
    from pipelines.core.errors import UserError
    from pipelines.data.fetching.dataset import fetch_dataset

    server.routes["/g.zip"] = lambda handler: _send(handler, bytes(3 << 20), length=False)
    spec = DatasetSource(url=f"{server.base}/g.zip", archive="GOPRO_Large.zip", out_dir="unused",
                         max_download_gb=0.001)
    out = tmp_path / "data" / "gopro"
    with pytest.raises(UserError, match=r"params fetch\.datasets\.gopro\.max_download_gb"):
        fetch_dataset("gopro", spec, out, trust_unverified=True, timeout=5, retries=0, log=_quiet)
    assert not out.exists() and list((tmp_path / "data").iterdir()) == []
