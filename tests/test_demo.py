import json

import imageio.v3 as iio
import pytest

pytestmark = pytest.mark.usefixtures("gl")


def test_demo_writes_video_grid_and_backend_comparison(tmp_path):
    from rl_laof.commands.demo import main

    report = main(["--task", "walker-walk", "--distractors", "medium", "--steps", "6", "--size", "32",
                   "--out", str(tmp_path)])
    files = report["files"]
    video = iio.imread(files["gif"], index=None)
    assert video.shape[0] == 6 and video.shape[1:3] == (64, 4 * 64)
    grid = iio.imread(files["levels_png"])
    assert grid.shape[0] == 5 * 64  # clean, easy, medium, hard, laom
    assert iio.imread(files["backends_png"]).shape[0] == 3 * 64  # envpool, dm_control, agent mask
    assert json.loads((tmp_path / "demo.json").read_text())["files"] == files


def test_demo_rejects_unknown_task(tmp_path):
    from rl_laof.commands.demo import main

    with pytest.raises(ValueError, match="walker-walk"):
        main(["--task", "walker-fly", "--out", str(tmp_path)])
