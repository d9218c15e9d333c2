"""EuroSAT (Helber et al., 2019): 10 land-use classes of Sentinel-2 RGB tiles, folder codes named as phrases."""

from promptinfo.data.readers import per_class_split
from promptinfo.data.registry import Benchmark, TorchvisionSource, google_drive, register_benchmark

RENAMES = {
    "AnnualCrop": "Annual Crop Land",
    "Forest": "Forest",
    "HerbaceousVegetation": "Herbaceous Vegetation Land",
    "Highway": "Highway or Road",
    "Industrial": "Industrial Buildings",
    "Pasture": "Pasture Land",
    "PermanentCrop": "Permanent Crop Land",
    "Residential": "Residential Buildings",
    "River": "River",
    "SeaLake": "Sea or Lake",
}

EUROSAT = register_benchmark(
    Benchmark(
        key="eurosat",
        name="EuroSAT",
        folder="eurosat",
        image_dir="2750",
        split_file="split_zhou_EuroSAT.json",
        template="a centered satellite photo of {}.",
        cma_lambda=0.1,
        num_classes=10,
        sizes=(13500, 5400, 8100),
        required=("2750",),
        read_fn=per_class_split("2750", renames=RENAMES),
        download=TorchvisionSource("EuroSAT", moves=(("eurosat/2750", "2750"),)),
        files=(google_drive("1Ip7yaCWFi0eaOFUGga0lUdVi_DDQth1o", "split_zhou_EuroSAT.json"),),
    )
)
