"""vl_imreadjpeg (vlnn/imread.py): images written with Pillow at test time,
results checked against plain numpy and Pillow references."""

import re
import sys

import numpy as np
import pytest

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

import vlnn  # noqa: E402
from vlnn import vl_imreadjpeg  # noqa: E402
from vlnn.imread import resize_matrix  # noqa: E402

RNG = np.random.default_rng(0)


def pixels(h, w, channels=3, seed=0):
    rng = np.random.default_rng(seed)
    shape = (h, w, channels) if channels > 1 else (h, w)
    return (rng.random(shape) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    out = {}
    specs = {"rgb": (pixels(40, 60), "RGB", "png"), "jpeg": (pixels(30, 45, seed=1), "RGB", "jpg"),
             "gray": (pixels(24, 20, 1, seed=2), "L", "png"),
             "rgba": (pixels(16, 12, 4, seed=3), "RGBA", "png"),
             "big": (pixels(48, 40, seed=4), "RGB", "png"),
             "tiny": (pixels(3, 4, seed=5), "RGB", "png")}
    for name, (array, mode, ext) in specs.items():
        path = root / f"{name}.{ext}"
        Image.fromarray(array, mode).save(path)
        out[name] = str(path)
    bad = root / "corrupt.jpg"
    bad.write_bytes(b"this is not an image")
    out["corrupt"] = str(bad)
    truncated = root / "truncated.jpg"
    truncated.write_bytes((root / "jpeg.jpg").read_bytes()[:200])
    out["truncated"] = str(truncated)
    out["missing"] = str(root / "missing.jpg")
    return out


def decoded(path):
    """Pillow's own RGB decoding of a file, float32."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), np.float32)


def pil_resize(image, size, box, method):
    """Pillow's float resize of each channel (same pixel-centre mapping and
    antialiasing as MatConvNet; the borders differ, so compare away from them)."""
    out_h, out_w = size
    return np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(image[:, :, k]), "F")
                                .resize((out_w, out_h), method, box=box)) for k in range(3)],
                    axis=2)


def read(files, *args, **kw):
    return vl_imreadjpeg(files, *args, **kw)


# ---------------------------------------------------------------------------
# reading


class TestReading:
    @pytest.mark.parametrize("name", ["rgb", "jpeg", "big"])
    def test_pixels_as_pillow_decodes_them(self, files, name):
        (im,) = read([files[name]])
        ref = decoded(files[name])
        assert im.dtype == np.float32 and im.shape == ref.shape
        np.testing.assert_array_equal(im, ref)
        assert 0 <= im.min() and im.max() <= 255

    def test_gray_gets_three_equal_channels(self, files):
        (im,) = read([files["gray"]])
        with Image.open(files["gray"]) as g:
            ref = np.asarray(g, np.float32)
        assert im.shape == (24, 20, 3)
        for k in range(3):
            np.testing.assert_array_equal(im[:, :, k], ref)

    def test_alpha_is_dropped(self, files):
        (im,) = read([files["rgba"]])
        with Image.open(files["rgba"]) as g:
            ref = np.asarray(g, np.float32)[:, :, :3]
        np.testing.assert_array_equal(im, ref)

    def test_several_files_in_order_and_path_objects(self, files):
        import pathlib
        names = [files["rgb"], pathlib.Path(files["gray"]), files["rgb"]]
        ims = read(names)
        assert isinstance(ims, list) and len(ims) == 3
        np.testing.assert_array_equal(ims[0], ims[2])
        assert ims[1].shape == (24, 20, 3)

    def test_empty_list(self):
        assert read([]) == []
        packed = read([], "Pack", "Resize", [4, 5])
        assert packed.shape == (4, 5, 3, 0) and packed.dtype == np.float32

    def test_missing_file_is_named(self, files):
        with pytest.raises(FileNotFoundError, match=re.escape(files["missing"])):
            read([files["rgb"], files["missing"]])

    @pytest.mark.parametrize("name", ["corrupt", "truncated"])
    def test_unreadable_file_is_named(self, files, name):
        with pytest.raises(OSError, match=rf"vl_imreadjpeg: could not read image "
                                          rf"'{re.escape(files[name])}'"):
            read([files[name]])

    def test_without_pillow(self, files, monkeypatch):
        monkeypatch.setitem(sys.modules, "PIL", None)
        monkeypatch.setitem(sys.modules, "PIL.Image", None)
        with pytest.raises(ImportError, match=r"vlnn\[images\]"):
            read([files["rgb"]])


# ---------------------------------------------------------------------------
# geometry: resize, crop, flip


class TestResize:
    def test_same_size_is_the_identity_for_every_filter(self, files):
        ref = decoded(files["rgb"])
        for method in ("box", "bilinear", "bicubic"):
            (im,) = read([files["rgb"]], "Resize", [40, 60], "Interpolation", method)
            np.testing.assert_array_equal(im, ref)
        for method in ("lanczos2", "lanczos3"):   # MatConvNet's eps leaks ~1e-5
            (im,) = read([files["rgb"]], resize=[40, 60], interpolation=method.upper())
            np.testing.assert_allclose(im, ref, atol=0.02)

    # 41 / 40 * 60 = 61.4999... in double arithmetic (as MatConvNet computes), so 61
    @pytest.mark.parametrize("size, expected", [(20, (20, 30)), (41, (41, 61)), (1, (1, 2)),
                                                ([10, 7], (10, 7))])
    def test_output_size(self, files, size, expected):
        (im,) = read([files["rgb"]], resize=size)       # the image is 40 x 60
        assert im.shape == expected + (3,)

    def test_box_shrink_by_two_is_the_block_mean(self, files):
        ref = decoded(files["rgb"]).reshape(20, 2, 30, 2, 3).mean(axis=(1, 3))
        (im,) = read([files["rgb"]], resize=[20, 30], interpolation="box")
        np.testing.assert_allclose(im, ref, rtol=1e-6, atol=1e-4)

    @pytest.mark.parametrize("method, pil", [("bilinear", "BILINEAR"), ("bicubic", "BICUBIC"),
                                             ("lanczos3", "LANCZOS"), ("box", "BOX")])
    def test_shrunk_centre_crop_matches_pillow(self, files, method, pil):
        # 48 x 40 image, crop 24 x 20 in the middle (offsets 12 and 10), out 12 x 10
        image = decoded(files["big"])
        (im,) = read([files["big"]], resize=[12, 10], crop_size=0.5, interpolation=method)
        ref = pil_resize(image, (12, 10), (10, 12, 30, 36), getattr(Image, pil))
        np.testing.assert_allclose(im, ref, atol=0.01)

    @pytest.mark.parametrize("method, pil", [("bilinear", "BILINEAR"), ("bicubic", "BICUBIC")])
    def test_enlarged_crop_matches_pillow_inside(self, files, method, pil):
        image = decoded(files["big"])
        # crop 23 x 20 of the 48 x 40 image at offsets (12, 10), enlarged to 32 x 28
        (im,) = read([files["big"]], resize=[32, 28], crop_size=0.5, interpolation=method)
        ref = pil_resize(image, (32, 28), (10, 12, 30, 35), getattr(Image, pil))
        np.testing.assert_allclose(im, ref, atol=0.01)

    def test_resize_matrix_rows_sum_to_one_and_clamp_at_the_borders(self):
        for method in ("box", "bilinear", "bicubic", "lanczos2", "lanczos3"):
            for args in [(7, 20, 20, 0), (20, 7, 7, 0), (5, 30, 12, 9), (9, 9, 9, 0)]:
                m = resize_matrix(*args, method=method)
                assert m.shape == args[:2]
                np.testing.assert_allclose(m.sum(axis=1), 1, atol=1e-5)
        # enlarging a 2-pixel row by 4 with bilinear: the ends repeat the edge pixels
        m = resize_matrix(8, 2, 2, 0, "bilinear")
        np.testing.assert_allclose(m @ np.array([0.0, 1.0]),
                                   [0, 0, 0.125, 0.375, 0.625, 0.875, 1, 1], atol=1e-6)


class TestCrop:
    def test_default_crop_is_the_largest_centred_square_for_a_square_output(self, files):
        image = decoded(files["rgb"])                  # 40 x 60
        (im,) = read([files["rgb"]], resize=[20, 20], interpolation="box")
        ref = image[:, 10:50].reshape(20, 2, 20, 2, 3).mean(axis=(1, 3))
        np.testing.assert_allclose(im, ref, atol=1e-4)

    def test_anisotropy_zero_stretches_the_whole_image(self, files):
        image = decoded(files["rgb"])
        (im,) = read([files["rgb"]], resize=[20, 20], crop_anisotropy=[0, 0],
                     interpolation="box")
        ref = image.reshape(20, 2, 20, 3, 3).mean(axis=(1, 3))
        np.testing.assert_allclose(im, ref, atol=1e-4)

    def test_random_crops_are_inside_and_sized_as_asked(self, files, capsys):
        image = decoded(files["big"])                  # 48 x 40
        ims = read([files["big"]] * 30, "Verbose", resize=[8, 8], crop_size=[0.25, 0.75],
                   crop_location="random", crop_anisotropy=[0.5, 2], interpolation="box",
                   seed=3)
        lines = capsys.readouterr().out.strip().splitlines()
        assert len(lines) == 30
        sizes, offsets = set(), set()
        for im, line in zip(ims, lines):
            ch, cw, dy, dx = map(int, re.search(r"crop (\d+) x (\d+) at \((\d+), (\d+)\)",
                                                line).groups())
            assert 0 <= dy <= 48 - ch and 0 <= dx <= 40 - cw
            aniso = (cw / ch)
            assert 0.5 * 0.8 <= aniso <= 2 * 1.25
            side = np.sqrt(ch * cw)                     # the largest square crop is 40
            assert 0.25 * 40 - 2 <= side <= 0.75 * 40 * 1.25 + 2
            sizes.add((ch, cw))
            offsets.add((dy, dx))
            crop = image[dy:dy + ch, dx:dx + cw]
            box = (dx, dy, dx + cw, dy + ch)
            ref = pil_resize(image, (8, 8), box, Image.BOX)
            # box shrinking: compare the interior pixels (the borders clamp differently)
            np.testing.assert_allclose(im[2:-2, 2:-2], ref[2:-2, 2:-2], atol=0.01)
            assert crop.size > 0
        assert len(sizes) > 5 and len(offsets) > 5

    def test_flip_mirrors_about_half_of_the_images(self, files):
        base = decoded(files["rgb"])
        ims = read([files["rgb"]] * 16, "Flip", seed=0)
        flipped = [bool(np.array_equal(im, base[:, ::-1])) for im in ims]
        assert all(f or np.array_equal(im, base) for f, im in zip(flipped, ims))
        assert 0 < sum(flipped) < 16

    def test_flip_is_applied_after_the_crop(self, files):
        image = decoded(files["rgb"])
        ims = read([files["rgb"]] * 12, "Flip", resize=[20, 20], interpolation="box", seed=1)
        ref = image[:, 10:50].reshape(20, 2, 20, 2, 3).mean(axis=(1, 3))
        for im in ims:
            assert (np.allclose(im, ref, atol=1e-4) or np.allclose(im, ref[:, ::-1], atol=1e-4))


# ---------------------------------------------------------------------------
# colour


def fit_scale(y, x):
    """The factor a with y - mean(y) = a (x - mean(x)), least squares."""
    xc, yc = x - x.mean(), y - y.mean()
    return float((xc * yc).sum() / (xc * xc).sum())


class TestColour:
    def test_subtract_average_triple_and_scalar(self, files):
        base = decoded(files["rgb"])
        (im,) = read([files["rgb"]], subtract_average=[10, 20, 30.5])
        np.testing.assert_allclose(im, base - np.float32([10, 20, 30.5]), atol=1e-4)
        (im,) = read([files["rgb"]], "SubtractAverage", np.float32(7))
        np.testing.assert_allclose(im, base - 7, atol=1e-4)

    def test_subtract_average_image(self, files):
        base = decoded(files["rgb"])
        avg = RNG.random((40, 60, 3)).astype(np.float32) * 100
        (im,) = read([files["rgb"]], resize=[40, 60], subtract_average=avg)
        np.testing.assert_allclose(im, base - avg, atol=1e-4)

    def test_contrast_scales_about_the_channel_mean(self, files):
        base = decoded(files["rgb"])
        factors = []
        for im in read([files["rgb"]] * 10, contrast=0.5, seed=2):
            c = fit_scale(im[:, :, 0], base[:, :, 0])
            factors.append(c)
            ref = c * base + (1 - c) * base.mean(axis=(0, 1))
            np.testing.assert_allclose(im, ref, atol=2e-3)
        assert all(0.5 - 1e-6 <= c <= 1.5 + 1e-6 for c in factors)
        assert max(factors) - min(factors) > 0.2

    def test_saturation_mixes_with_the_gray_level(self, files):
        base = decoded(files["rgb"])
        gray = base.mean(axis=2, keepdims=True)
        factors = []
        for im in read([files["rgb"]] * 10, saturation=0.8, seed=4):
            s = fit_scale(im - gray, base - gray)
            factors.append(s)
            np.testing.assert_allclose(im, s * base + (1 - s) * gray, atol=2e-3)
        assert all(0.2 - 1e-6 <= s <= 1.8 + 1e-6 for s in factors)
        assert max(factors) - min(factors) > 0.3

    def test_brightness_is_a_normal_colour_shift_with_covariance_b_bt(self, files):
        base = decoded(files["tiny"])
        b = np.array([[10.0, 0, 0], [5, 20, 0], [0, 0, 2]])
        # MATLAB's column-major 3 x 3 as a flat list of nine
        ims = read([files["tiny"]] * 400, brightness=b.ravel(order="F"), seed=5)
        shifts = np.array([im - base for im in ims])          # 400 x 3 x 4 x 3
        per_image = shifts.reshape(400, -1, 3)
        np.testing.assert_allclose(per_image, per_image[:, :1, :].repeat(12, axis=1), atol=1e-3)
        cov = np.cov(per_image[:, 0, :].T)
        np.testing.assert_allclose(cov, b @ b.T, atol=0.15 * 500, rtol=0.2)
        # three numbers are the diagonal: every channel moves, independently
        ims = read([files["tiny"]] * 400, brightness=[3, 4, 5], seed=6)
        std = np.array([im - base for im in ims]).reshape(400, -1, 3)[:, 0, :].std(axis=0)
        np.testing.assert_allclose(std, [3, 4, 5], rtol=0.15)

    def test_saturation_mixes_after_the_average_is_subtracted(self, files):
        # MatConvNet folds the average into the offsets that saturation mixes:
        # Y = s (X - AVG) + (1 - s) gray(X - AVG)
        base = decoded(files["rgb"])
        avg = np.float32([100, 110, 140])
        z = base - avg
        gray = z.mean(axis=2, keepdims=True)
        for im in read([files["rgb"]] * 4, saturation=0.8, subtract_average=avg, seed=7):
            s = fit_scale(im - gray, z - gray)
            np.testing.assert_allclose(im, s * z + (1 - s) * gray, atol=2e-3)

    def test_contrast_with_the_average(self, files):
        base = decoded(files["rgb"])
        avg = np.float32([100, 110, 140])
        mean = base.mean(axis=(0, 1))
        for im in read([files["rgb"]] * 4, contrast=0.8, subtract_average=avg, seed=8):
            c = fit_scale(im[:, :, 1], base[:, :, 1])
            np.testing.assert_allclose(im, c * base + (1 - c) * mean - avg, atol=2e-3)


# ---------------------------------------------------------------------------
# packing, prefetching, threads, seeds


class TestBatch:
    def test_pack(self, files):
        names = [files["rgb"], files["gray"], files["jpeg"]]
        packed = read(names, "Pack", "Resize", [16, 12])
        assert packed.shape == (16, 12, 3, 3) and packed.dtype == np.float32
        for k, im in enumerate(read(names, resize=[16, 12])):
            np.testing.assert_array_equal(packed[:, :, :, k], im)

    @pytest.mark.parametrize("resize", [None, 16])
    def test_pack_needs_a_fixed_size(self, files, resize):
        with pytest.raises(ValueError, match="Pack must be used with Resize"):
            read([files["rgb"]], pack=True, resize=resize)

    def test_prefetch_then_collect(self, files):
        names = [files["rgb"], files["jpeg"]]
        assert read(names, "Prefetch", "NumThreads", 2) is None
        ims = read(names, "NumThreads", 2)
        for im, name in zip(ims, names):
            np.testing.assert_array_equal(im, decoded(name))

    def test_collected_images_come_from_the_prefetching_call(self, files):
        names = [files["rgb"]] * 4
        expected = read(names, "Flip", resize=[20, 20], contrast=0.5, seed=11)
        assert read(names, "Prefetch", "Flip", resize=[20, 20], contrast=0.5, seed=11) is None
        got = read(names)                       # options of the prefetching call apply
        for a, b in zip(expected, got):
            np.testing.assert_array_equal(a, b)
        # the batch was handed out: the same call now reads afresh
        (again,) = read([files["rgb"]])
        np.testing.assert_array_equal(again, decoded(files["rgb"]))

    def test_other_files_discard_the_prefetch(self, files):
        assert read([files["rgb"]], "Prefetch", resize=[5, 5]) is None
        (im,) = read([files["jpeg"]])
        np.testing.assert_array_equal(im, decoded(files["jpeg"]))
        (im,) = read([files["rgb"]])
        np.testing.assert_array_equal(im, decoded(files["rgb"]))

    def test_prefetch_error_surfaces_when_collecting(self, files):
        assert read([files["missing"]], "Prefetch") is None
        with pytest.raises(FileNotFoundError, match=re.escape(files["missing"])):
            read([files["missing"]])

    def test_thread_count_does_not_change_the_result(self, files):
        names = [files["big"], files["rgb"], files["jpeg"], files["gray"]] * 2
        opts = dict(resize=[10, 9], crop_size=[0.4, 1], crop_location="random", flip=True,
                    brightness=10, contrast=0.3, saturation=0.3, seed=12)
        one = read(names, num_threads=1, **opts)
        four = read(names, num_threads=4, **opts)
        for a, b in zip(one, four):
            np.testing.assert_array_equal(a, b)
        read([], num_threads=1)

    def test_seeds(self, files):
        names = [files["rgb"]] * 3
        opts = dict(resize=[12, 12], crop_size=[0.3, 1], crop_location="random", flip=True,
                    brightness=5)
        a = read(names, seed=1, **opts)
        b = read(names, seed=np.random.default_rng(1), **opts)
        c = read(names, seed=2, **opts)
        previous = vlnn.set_random_seed(1)
        try:
            d = read(names, **opts)
        finally:
            vlnn.set_random_generator(previous)
        for x, y, z in zip(a, b, d):
            np.testing.assert_array_equal(x, y)
            np.testing.assert_array_equal(x, z)
        assert not all(np.array_equal(x, y) for x, y in zip(a, c))

    def test_gpu_without_cupy(self, files):
        try:
            import cupy  # noqa: F401
            pytest.skip("CuPy is installed")
        except ImportError:
            pass
        with pytest.raises(ImportError, match="GPU needs CuPy"):
            read([files["rgb"]], "GPU")


# ---------------------------------------------------------------------------
# bad options


@pytest.mark.parametrize("args, kwargs, exc, match", [
    ((), {"resize": 0}, ValueError, "Resize must be >= 1"),
    ((), {"resize": [1, 2, 3]}, ValueError, "Resize must have 1 or 2 elements"),
    ((), {"resize": 2.5}, ValueError, "Resize must be integral"),
    ((), {"crop_size": [0.5, 1.2]}, ValueError, "CropSize must be"),
    ((), {"crop_size": [0.8, 0.5]}, ValueError, "CropSize must be"),
    ((), {"crop_anisotropy": [2, 1]}, ValueError, "CropAnisotropy must be"),
    ((), {"crop_anisotropy": -1}, ValueError, "CropAnisotropy must be"),
    ((), {"crop_location": "left"}, ValueError, "CropLocation must be 'center' or 'random'"),
    ((), {"interpolation": "nearest"}, ValueError, "Interpolation must be one of"),
    ((), {"contrast": 1.5}, ValueError, r"Contrast must be in \[0, 1\]"),
    ((), {"saturation": -0.1}, ValueError, r"Saturation must be in \[0, 1\]"),
    ((), {"brightness": [1, 2]}, ValueError, "Brightness must have 1 or 3 or 9 elements"),
    ((), {"subtract_average": np.zeros((4, 4, 3), np.float32)}, ValueError,
     "cannot subtract an average image unless Resize"),
    ((), {"subtract_average": np.zeros((4, 4, 3), np.float32), "resize": [5, 4]}, ValueError,
     r"the average image has shape \(4, 4, 3\)"),
    ((), {"num_threads": 1.5}, ValueError, "NumThreads must be integral"),
    (("NumThreadz", 2), {}, TypeError, "unknown option 'NumThreadz'"),
    ((), {"prefetchh": True}, TypeError, "unknown option 'prefetchh'"),
    (("Resize",), {}, TypeError, "option 'Resize' needs a value"),
])
def test_bad_options(files, args, kwargs, exc, match):
    with pytest.raises(exc, match=f"vl_imreadjpeg: {match}"):
        read([files["rgb"]], *args, **kwargs)


@pytest.mark.parametrize("value, match", [("a.jpg", r"files must be a list of file names .*"
                                                     r"pass \['a.jpg'\]"),
                                          (5, "files must be a list of file names"),
                                          ([1], r"files\[0\] is not a file name")])
def test_bad_file_lists(value, match):
    with pytest.raises(TypeError, match=f"vl_imreadjpeg: {match}"):
        read(value)
