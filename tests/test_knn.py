"""Weighted kNN (DINO protocol) against a brute-force reference, feature extraction, the offline digits set."""

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mimcl_hub.eval import KNNMonitor, extract_features, knn_accuracy, knn_predict, load_knn_datasets


def brute_force_knn(train, labels, test, k, T, C):
    """Loop-by-loop reference: cosine similarity, k nearest, votes exp(s/T) per class."""
    train = np.asarray(train, np.float64)
    test = np.asarray(test, np.float64)
    train = train / np.linalg.norm(train, axis=1, keepdims=True)
    test = test / np.linalg.norm(test, axis=1, keepdims=True)
    k = min(k, len(train))
    scores = np.zeros((len(test), C))
    for i, x in enumerate(test):
        sims = [(float(x @ t), j) for j, t in enumerate(train)]
        sims.sort(key=lambda s: -s[0])
        for s, j in sims[:k]:
            scores[i, labels[j]] += math.exp(s / T)
    return scores


@pytest.mark.parametrize("k,T,chunk", [(1, 0.07, 1024), (5, 0.07, 3), (20, 0.5, 7), (100, 0.1, 4)])
def test_knn_predict_matches_brute_force(k, T, chunk):
    g = torch.Generator().manual_seed(k)
    train = torch.randn(40, 6, generator=g)
    labels = torch.randint(0, 4, (40,), generator=g)
    test = torch.randn(13, 6, generator=g)
    scores = knn_predict(train, labels, test, k=k, T=T, num_classes=4, chunk_size=chunk)
    ref = brute_force_knn(train.numpy(), labels.numpy(), test.numpy(), k, T, 4)
    assert scores.shape == (13, 4)
    np.testing.assert_allclose(scores.numpy(), ref, rtol=1e-4)
    assert torch.equal(scores.argmax(1), torch.from_numpy(ref.argmax(1)))


def test_knn_accuracy_on_separable_clusters():
    g = torch.Generator().manual_seed(0)
    centres = torch.eye(3, 8) * 10
    train_y = torch.arange(60) % 3
    test_y = torch.arange(30) % 3
    train = centres[train_y] + 0.1 * torch.randn(60, 8, generator=g)
    test = centres[test_y] + 0.1 * torch.randn(30, 8, generator=g)
    acc = knn_accuracy(train, train_y, test, test_y, k=5)
    assert acc == {"top1": 1.0}            # no top-5 with 3 classes
    shuffled = knn_accuracy(train, train_y, test, test_y[torch.randperm(30, generator=g)], k=5)
    assert shuffled["top1"] < 1.0


def test_knn_rejects_bad_input():
    x = torch.randn(5, 3)
    with pytest.raises(ValueError, match="differ in dimension"):
        knn_predict(x, torch.zeros(5), torch.randn(2, 4))
    with pytest.raises(ValueError, match="k must be"):
        knn_predict(x, torch.zeros(5), x, k=0)
    with pytest.raises(ValueError, match="temperature"):
        knn_predict(x, torch.zeros(5), x, T=0)
    with pytest.raises(ValueError, match="num_classes"):
        knn_predict(x, torch.tensor([0, 1, 2, 3, 4]), x, num_classes=3)
    with pytest.raises(ValueError, match="entries"):
        knn_predict(x, torch.zeros(4), x)


def test_extract_features_eval_mode_and_order():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    model.train()
    images = torch.randn(10, 3, 8, 8)
    labels = torch.arange(10)
    loader = DataLoader(TensorDataset(images, labels), batch_size=4)
    feats, ys = extract_features(model, loader)
    assert feats.shape == (10, 4) and feats.dtype == torch.float32
    assert torch.equal(ys, labels)
    assert model.training                       # mode restored
    model.eval()
    torch.testing.assert_close(feats, model(images))   # computed in eval mode (running statistics)


def test_digits_monitor_offline():
    train, test = load_knn_datasets("digits", img_size=16, max_train=200, max_test=100, seed=0)
    assert len(train) == 200 and len(test) == 100 and train.num_classes == 10
    x, y = train[0]
    assert x.shape == (3, 16, 16) and 0 <= y < 10
    # a fixed random conv net separates digits far better than chance (10%)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten())
    result = KNNMonitor(train, test, k=20, T=0.07)(net)
    assert set(result) == {"knn_top1", "knn_top5"}
    assert result["knn_top1"] > 0.5


def test_knn_dataset_errors(tmp_path):
    # a missing path: the package's one resolver's message (mimcl_hub.data.resolve.source_problem), a ValueError
    with pytest.raises(ValueError, match=r"'.*missing': no such file or folder; use 'digits'"):
        load_knn_datasets(str(tmp_path / "missing"))


def test_knn_from_a_saved_image_dataset(tmp_path):
    """The path an HF image dataset takes (e.g. uoft-cs/cifar10: an Image column 'img', a ClassLabel 'label')."""
    import datasets

    rng = np.random.default_rng(0)
    features = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b", "c"])})

    def split(n):
        return datasets.Dataset.from_dict(
            {"img": [rng.integers(0, 256, (12, 10, 3), dtype=np.uint8) for _ in range(n)],
             "label": [i % 3 for i in range(n)]}, features=features)

    datasets.DatasetDict({"train": split(20), "test": split(9)}).save_to_disk(str(tmp_path / "dd"))
    train, test = load_knn_datasets(str(tmp_path / "dd"), img_size=8, max_train=15)
    assert (len(train), len(test), train.num_classes) == (15, 9, 3)
    x, y = test[4]
    assert x.shape == (3, 8, 8) and y == 1
    split(10).save_to_disk(str(tmp_path / "only_train"))        # no test split: an 80/20 split of train
    train, test = load_knn_datasets(str(tmp_path / "only_train"), img_size=8)
    assert (len(train), len(test)) == (8, 2)


def _photos(n: int, size: tuple = (12, 10)) -> list:
    """Small real photos (crops of scikit-learn's sample images), uint8 (H, W, 3)."""
    import cv2
    from sklearn.datasets import load_sample_image

    photos = [load_sample_image(name) for name in ("china.jpg", "flower.jpg")]
    return [cv2.resize(photos[i % 2][20 * i:20 * i + 200, 30 * i:30 * i + 160], size[::-1], interpolation=cv2.INTER_AREA)
            for i in range(n)]


def _labelled(images, feature) -> "datasets.Dataset":
    import datasets

    features = datasets.Features({"img": feature, "label": datasets.ClassLabel(names=["a", "b", "c"])})
    return datasets.Dataset.from_dict({"img": list(images), "label": [i % 3 for i in range(len(images))]},
                                      features=features)


def test_knn_float_images_use_the_one_conversion(tmp_path):
    """issue 13: a saved dataset of float [0, 1] images (Array3D float32) is read as x * 255, decided by the
    column's feature type: it gives exactly the pixels of its uint8 version; floats outside [0, 1] are refused
    naming the row and the column."""
    import datasets

    photos = _photos(9)
    unit = [p.astype(np.float32) / 255 for p in photos]
    unit[0] = unit[0] * 0.02  # one very dark picture is read by the same rule as the others
    photos[0] = np.rint(unit[0] * np.float32(255)).astype(np.uint8)
    as_float = _labelled(unit, datasets.Array3D(shape=(12, 10, 3), dtype="float32"))
    as_uint8 = _labelled(photos, datasets.Array3D(shape=(12, 10, 3), dtype="uint8"))
    as_float.save_to_disk(str(tmp_path / "float"))
    as_uint8.save_to_disk(str(tmp_path / "uint8"))
    f_train, f_test = load_knn_datasets(str(tmp_path / "float"), img_size=12)
    u_train, u_test = load_knn_datasets(str(tmp_path / "uint8"), img_size=12)
    assert f_train.images.dtype == np.uint8 and f_train.images.shape == (7, 12, 12, 3)
    np.testing.assert_array_equal(f_train.images, u_train.images)
    np.testing.assert_array_equal(f_test.images, u_test.images)
    assert torch.equal(f_test[1][0], u_test[1][0])

    unit[5] = unit[5] * 255  # grey levels stored as float
    _labelled(unit, datasets.Array3D(shape=(12, 10, 3), dtype="float32")).save_to_disk(str(tmp_path / "bad"))
    with pytest.raises(ValueError, match=r"row 5 of column 'img': float pixels range over .*outside \[0, 1\]"):
        load_knn_datasets(str(tmp_path / "bad"), img_size=8)


def test_knn_16bit_pngs_are_scaled_not_clipped(tmp_path):
    """issue 19 item 5: 16-bit PNGs came out almost white (``convert("RGB")`` clips every value above 255);
    they are scaled round(x * 255 / 65535)."""
    import cv2
    import datasets

    paths, expected = [], []
    for i, photo in enumerate(_photos(6)):
        grey16 = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY).astype(np.uint16) * 257 + np.uint16(i)  # real 16-bit data
        paths.append(str(tmp_path / f"grey16_{i}.png"))
        assert cv2.imwrite(paths[-1], grey16)
        expected.append((grey16.astype(np.uint32) * 255 + 32767) // 65535)
    ds = _labelled(paths, datasets.Image())
    assert ds[0]["img"].mode == "I;16"
    # (rows 1, 4, 5: two classes; a one-class test split is refused, issue 19 item 4)
    datasets.DatasetDict({"train": ds, "test": ds.select([1, 4, 5])}).save_to_disk(str(tmp_path / "png16"))
    train, test = load_knn_datasets(str(tmp_path / "png16"), img_size=12)  # 12x10 -> 12x12: width resized only
    expected = np.stack([cv2.resize(np.repeat(e.astype(np.uint8)[..., None], 3, -1), (12, 12),
                                    interpolation=cv2.INTER_LINEAR) for e in expected])
    np.testing.assert_array_equal(train.images, expected)
    np.testing.assert_array_equal(test.images, expected[[1, 4, 5]])
    assert (train.images == 255).mean() < 0.05  # not almost white


def test_knn_memory_does_not_scale_with_the_largest_image(tmp_path):
    """issue 19 item 7: images of mixed sizes were all resized up to the largest before the resize to the
    model's size (100 images with one 3000x3000 photo peaked at 5.2 GB). Each image is now resized on its own
    straight to the evaluation size: what is held is (N, S, S, 3) uint8, and the traced peak stays near one
    copy of the large image (the old code peaked at ~136 MB on this case: 7 copies at 1500x1500, twice)."""
    import tracemalloc

    import datasets
    from PIL import Image

    import mimcl_hub.data.images  # noqa: F401  (imported before measuring)

    yy, xx = np.mgrid[0:1500, 0:1500]
    large = np.stack([xx * 255 // 1499, yy * 255 // 1499, (xx + yy) * 255 // 2998], -1).astype(np.uint8)
    images = [Image.fromarray(p) for p in _photos(6, size=(16, 16))] + [Image.fromarray(large)]
    ds = _labelled(images, datasets.Image())
    # the test split in reverse order: a test split that is the train split itself is refused (kNN ~1.0)
    datasets.DatasetDict({"train": ds, "test": ds.select(range(len(ds) - 1, -1, -1))}).save_to_disk(str(tmp_path / "mixed"))
    tracemalloc.start()
    try:
        train, test = load_knn_datasets(str(tmp_path / "mixed"), img_size=8)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert train.images.shape == test.images.shape == (7, 8, 8, 3) and train.images.dtype == np.uint8
    assert peak < 3 * large.nbytes, f"peak {peak / 2**20:.1f} MiB for a {large.nbytes / 2**20:.1f} MiB image"
    import cv2

    np.testing.assert_array_equal(train.images[6], cv2.resize(large, (8, 8), interpolation=cv2.INTER_AREA))


def test_knn_reads_what_the_resolver_reads(tmp_path):
    """``load_knn_datasets`` reads its source with the package's one resolver (mimcl_hub.data.resolve): an
    imagefolder-style folder (class sub-folders per split) and a Hub-style Parquet folder load like a save_to_disk
    folder; a ``--max_test`` above the split's size takes the whole split."""
    import datasets
    from PIL import Image

    photos = _photos(12)
    for split, rows in (("train", range(8)), ("test", range(8, 12))):
        for i in rows:
            folder = tmp_path / "imagefolder" / split / ["cat", "dog"][i % 2]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(photos[i]).save(folder / f"{i}.png")
    train, test = load_knn_datasets(str(tmp_path / "imagefolder"), img_size=8, max_test=1000)
    assert (len(train), len(test), train.num_classes, train.class_names) == (8, 4, 2, ["cat", "dog"])
    assert sorted(test.labels.tolist()) == [0, 0, 1, 1]

    (tmp_path / "parquet" / "data").mkdir(parents=True)
    ds = _labelled(photos, datasets.Image())
    ds.select(range(9)).to_parquet(str(tmp_path / "parquet" / "data" / "train-00000-of-00001.parquet"))
    ds.select(range(9, 12)).to_parquet(str(tmp_path / "parquet" / "data" / "test-00000-of-00001.parquet"))
    train, test = load_knn_datasets(str(tmp_path / "parquet"), img_size=8)
    assert (len(train), len(test), train.class_names) == (9, 3, ["a", "b", "c"])
    np.testing.assert_array_equal(test.labels, [0, 1, 2])


def test_knn_held_out_split_is_stratified(tmp_path):
    """A dataset with a 'train' split only: ceil(n / 5) rows are held out, shared over the classes by largest
    remainder and never a class's last row, so every held-out class is also a train class; seeded."""
    import datasets

    from mimcl_hub.eval.labelled import _held_out

    ids = np.array([0] * 12 + [1] * 6 + [2] * 1 + [3] * 2)                # 21 rows -> 5 held out
    tr, te = _held_out(ids, seed=0)
    assert len(te) == 5 and len(tr) == 16 and not set(tr) & set(te)
    assert np.bincount(ids[te], minlength=4).tolist() == [3, 1, 0, 1]     # 2.4, 1.2, 0.2, 0.4 -> 2+1, 1, 0, 0+1
    assert set(ids[te]) <= set(ids[tr])
    assert np.array_equal(_held_out(ids, seed=0)[1], te) and not np.array_equal(_held_out(ids, seed=1)[1], te)
    images = [np.full((6, 6, 3), i, np.uint8) for i in range(21)]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")})
    datasets.Dataset.from_dict({"image": images, "label": ids.tolist()}, features=features).save_to_disk(
        str(tmp_path / "single"))
    train, test = load_knn_datasets(str(tmp_path / "single"), img_size=6, mean=(0, 0, 0), std=(1, 1, 1))
    assert len(test) == 5 and sorted(test.labels.tolist()) == sorted(ids[te].tolist())
    assert np.allclose(test.images[:, 0, 0, 0], sorted(te))                # rows named by their place in 'train'


def test_knn_accuracy_refuses_test_labels_outside_the_classes():
    """issue 19 item 3 at the tensor level: a test label of -1 (or >= C) can never be predicted; it is refused, not
    counted as an error (which gave top-1 = 0.0)."""
    from mimcl_hub.eval import linear_probe

    x = torch.randn(6, 3)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    for bad in (torch.tensor([-1, 0, 1, 2, 0, 1]), torch.tensor([0, 1, 3, 2, 0, 1])):
        with pytest.raises(ValueError, match=r"test_labels has label (-1|3) outside \[0, 3\)"):
            knn_accuracy(x, y, x, bad, num_classes=3)
        with pytest.raises(ValueError, match=r"test_labels has label (-1|3) outside \[0, 3\)"):
            linear_probe(x, y, x, bad, num_classes=3)
    with pytest.raises(ValueError, match=r"test_labels has label -1 outside \[0, 3\)"):
        knn_accuracy(x, y, x, torch.tensor([-1, 0, 1, 2, 0, 1]))
