"""ABAW2 submission writer and validator (pasn_jax/submission.py): the files read back with a plain reader here."""

import os
import subprocess
import sys

import numpy as np
import pytest

from pasn_jax import labels, submission
from pasn_jax.predictions import write_predictions

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Video a: 10 frames (frames.csv), predictions at 3, 4, 7, 8 (gaps at the start, middle and end).
# Video c: 6 frames (last cropped frame), predictions at 2, 5. Video b_left: predictions at 1-4, nothing else knows.
FRAMES = {"a": [3, 4, 7, 8], "b_left": [1, 2, 3, 4], "c": [2, 5]}
COUNTS = {"a": 10, "b_left": 4, "c": 6}
# a's frame lines 1-10 come from these predicted frames (the filling rule).
A_SOURCE_FRAME = [3, 3, 3, 4, 4, 4, 7, 8, 8, 8]


def make_predictions() -> dict:
    rng = np.random.default_rng(0)
    video = [v for v, fs in FRAMES.items() for _ in fs]
    frame = [f for fs in FRAMES.values() for f in fs]
    n = len(frame)
    au_prob = rng.uniform(0, 1, (n, 12)).astype(np.float32)
    au_prob[0] = 0.5  # a frame 3: exactly at the threshold -> 1 ...
    au_prob[0, 0] = 0.4999  # ... just below -> 0
    expr_prob = rng.dirichlet(np.ones(7), n).astype(np.float32)
    va_pred = rng.uniform(-0.9, 0.9, (n, 2)).astype(np.float32)
    va_pred[1] = [1.7, -2.0]  # a frame 4: clipped to 1, -1
    return {"video": np.array(video), "frame": np.array(frame), "au_prob": au_prob, "expr_prob": expr_prob,
            "va_pred": va_pred, "au": -np.ones((n, 12), int), "expr": -np.ones(n, int), "va": -5 * np.ones((n, 2))}


def read_task(folder, task, video):
    """(header, rows of string values): an independent reader of one submission file."""
    with open(os.path.join(folder, task, f"{video}.txt")) as f:
        lines = f.read().split("\n")
    assert lines[-1] == "", "the file ends with a newline"
    return lines[0], [line.split(",") for line in lines[1:-1]]


@pytest.fixture
def inputs(tmp_path):
    """predictions.csv, frames.csv (a) and a tree whose cropped_aligned/c ends at frame 6."""
    write_predictions(str(tmp_path / "predictions.csv"), make_predictions())
    (tmp_path / "frames.csv").write_text("video,frames\na,10\n")
    crops = tmp_path / "tree" / "cropped_aligned" / "c"
    crops.mkdir(parents=True)
    for i in (1, 2, 5, 6):
        (crops / f"{i:05d}.jpg").write_bytes(b"")
    return tmp_path


def write_args(d, out="sub", *extra):
    return ["write", "--predictions", str(d / "predictions.csv"), "--out", str(d / out),
            "--frame-counts", str(d / "frames.csv"), "--root", str(d / "tree"), *extra]


@pytest.fixture
def written(inputs):
    assert submission.main(write_args(inputs)) == 0
    return inputs / "sub"


def test_write_headers_counts_values_and_filling(inputs, capsys):
    assert submission.main(write_args(inputs)) == 0
    out = capsys.readouterr().out
    assert "frame counts: 1 from frames.csv, 1 from the last cropped frame, 1 from the last predicted frame" in out
    sub, p = str(inputs / "sub"), make_predictions()
    assert sorted(os.listdir(sub)) == ["AU", "EXPR", "VA", "frame_counts.csv"]
    assert open(os.path.join(sub, "frame_counts.csv")).read().split() == [
        "video,frames,source", "a,10,frame_count_file", "b_left,4,last_predicted", "c,6,last_cropped"]
    for video, count in COUNTS.items():
        for task, key in [("AU", "au"), ("EXPR", "expr"), ("VA", "va")]:
            header, rows = read_task(sub, task, video)
            assert header == labels.HEADERS[key]
            assert len(rows) == count
    rows_of = {f: i for i, f in enumerate(p["frame"][:4])}  # a's rows are the first four
    au, expr, va = (read_task(sub, t, "a")[1] for t in ("AU", "EXPR", "VA"))
    for line, source in enumerate(A_SOURCE_FRAME):
        i = rows_of[source]
        assert au[line] == [str(int(x >= 0.5)) for x in p["au_prob"][i]]
        assert expr[line] == [str(int(np.argmax(p["expr_prob"][i])))]
        np.testing.assert_allclose([float(x) for x in va[line]], np.clip(p["va_pred"][i], -1, 1), atol=1e-5)
    assert au[0] == ["0"] + ["1"] * 11  # 0.4999 -> 0, 0.5 -> 1
    assert va[3] == ["1.000000", "-1.000000"]  # frame 4: 1.7, -2.0 clipped
    # c: 6 frames from predictions at 2 and 5: frame 1 takes frame 2's, 3-4 take 2's, 6 takes 5's.
    c_expr = [r[0] for r in read_task(sub, "EXPR", "c")[1]]
    c2, c5 = (str(int(np.argmax(p["expr_prob"][i]))) for i in (8, 9))
    assert c_expr == [c2, c2, c2, c2, c5, c5]


def test_frame_count_from_video_file(tmp_path):
    from pasn_jax.faces.video import write_video

    videos = tmp_path / "videos"
    videos.mkdir()
    try:  # b_left is a two-person clip of b.mp4
        write_video(str(videos / "b.mp4"), [np.full((32, 32, 3), 10 * i, np.uint8) for i in range(5)])
    except Exception as e:  # no encoder in this FFmpeg build
        pytest.skip(f"cannot encode a video here: {e}")
    p = make_predictions()
    counts = submission.write_submission(p, str(tmp_path / "sub"), videos=["b_left"], videos_dir=str(videos))
    assert counts == {"b_left": (5, "video_file")}
    header, rows = read_task(str(tmp_path / "sub"), "AU", "b_left")
    assert len(rows) == 5 and rows[4] == rows[3]  # frame 5 takes frame 4's prediction


def test_beyond_frame_count_or_failing_check_writes_nothing(tmp_path):
    with pytest.raises(submission.SubmissionError, match=r"video a: .*frame 8 .* 6 frames"):
        submission.write_submission(make_predictions(), str(tmp_path / "sub"), frame_counts={"a": 6})
    p = make_predictions()
    p["va_pred"][5, 1] = np.nan  # b_left frame 2: the writer's own check refuses it
    with pytest.raises(submission.SubmissionError, match=r"VA.b_left\.txt:3: expected two"):
        submission.write_submission(p, str(tmp_path / "sub"))
    assert os.listdir(tmp_path) == []


def corrupt(path, lineno, text):
    """Replaces line `lineno` (1-based) with `text`, or deletes it when text is None."""
    lines = open(path).read().split("\n")
    lines[lineno - 1:lineno] = [] if text is None else [text]
    open(path, "w").write("\n".join(lines))


@pytest.mark.parametrize("task, video, lineno, text, expected_line", [
    ("AU", "a", 1, "AU1,AU2", 1),  # wrong header
    ("EXPR", "a", 11, None, 11),  # last frame line missing
    ("AU", "b_left", 3, "0,0,2,0,0,0,0,0,0,0,0,0", 3),
    ("EXPR", "c", 2, "7", 2),
    ("VA", "a", 5, "1.5,0.0", 5),
    ("VA", "c", 7, "nan,0.1", 7),
])
def test_check_reports_one_line_per_problem(written, task, video, lineno, text, expected_line):
    assert submission.check(str(written)) == []
    corrupt(written / task / f"{video}.txt", lineno, text)
    problems = submission.check(str(written))
    assert len(problems) == 1, problems
    assert f"{os.path.join(task, video)}.txt:{expected_line}: expected" in problems[0]


def test_check_reports_missing_video_and_uses_frame_counts(written, tmp_path):
    os.remove(written / "VA" / "c.txt")
    problems = submission.check(str(written))
    assert len(problems) == 1 and os.path.join("VA", "c.txt") in problems[0] and "missing" in problems[0]
    os.remove(written / "frame_counts.csv")
    os.remove(written / "AU" / "c.txt")
    os.remove(written / "EXPR" / "c.txt")
    assert submission.check(str(written)) == []  # no counts known: any line count >= 1
    assert len(submission.check(str(written), {"a": 11})) == 3  # a's line count in AU, EXPR, VA


def test_cli_check_exit_codes(written, capsys, tmp_path):
    assert submission.main(["check", str(written)]) == 0
    assert f"ok: {written} (3 videos, tasks AU, EXPR, VA)" in capsys.readouterr().out
    (tmp_path / "more.csv").write_text("a,11\n")
    assert submission.main(["check", str(written), "--frame-counts", str(tmp_path / "more.csv")]) == 1
    corrupt(written / "EXPR" / "a.txt", 2, "9")
    assert submission.main(["check", str(written)]) == 1
    assert f"{os.path.join('EXPR', 'a.txt')}:2: expected one integer 0-6, found '9'" in capsys.readouterr().out
    run = subprocess.run([sys.executable, "-m", "pasn_jax.submission", "check", str(written)], cwd=REPO,
                         capture_output=True, text=True)
    assert run.returncode == 1 and "EXPR" in run.stdout and "Traceback" not in run.stderr


def test_existing_out_refused_and_untouched(inputs, capsys):
    (inputs / "sub").mkdir()
    (inputs / "sub" / "keep.txt").write_text("mine")
    assert submission.main(write_args(inputs)) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(inputs / "sub") in err
    assert os.listdir(inputs / "sub") == ["keep.txt"] and (inputs / "sub" / "keep.txt").read_text() == "mine"


def test_listed_video_without_predictions_refused(inputs, capsys):
    (inputs / "videos.txt").write_text("a\nzzz\n")
    before = sorted(os.listdir(inputs))
    assert submission.main(write_args(inputs, "sub", "--videos", str(inputs / "videos.txt"))) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{inputs / 'videos.txt'}:2:" in err and "zzz" in err
    assert sorted(os.listdir(inputs)) == before  # nothing written, no temporary folder left


def test_videos_list_and_tasks(inputs, capsys):
    (inputs / "videos.txt").write_text("c\n\na\n")
    assert submission.main(write_args(inputs, "sub", "--videos", str(inputs / "videos.txt"), "--tasks", "va")) == 0
    assert sorted(os.listdir(inputs / "sub")) == ["VA", "frame_counts.csv"]
    assert sorted(os.listdir(inputs / "sub" / "VA")) == ["a.txt", "c.txt"]
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("content, lineno", [("video,frames\na,ten\n", 2), ("a\n", 1), ("a,0\n", 1)])
def test_bad_frame_count_file_is_one_line(inputs, capsys, content, lineno):
    (inputs / "frames.csv").write_text(content)
    assert submission.main(write_args(inputs)) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {inputs / 'frames.csv'}:{lineno}: expected 'video,frames'") and err.count("\n") == 1
    assert not (inputs / "sub").exists()


def test_missing_inputs_are_one_line(inputs, capsys):
    os.remove(inputs / "predictions.csv")
    assert submission.main(write_args(inputs)) == 1
    assert capsys.readouterr().err == f"error: {inputs / 'predictions.csv'}: no such file\n"
    assert submission.main(["check", str(inputs / "nothing")]) == 1
    assert capsys.readouterr().err.startswith("error: ")
