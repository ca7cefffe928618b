"""The descriptor bank: human-designed crystal descriptors (Gong et al. 2023, matminer), fast and cached."""

from matgl_hybrid.descriptors.bank import archive_values, featurize
from matgl_hybrid.descriptors.cache import DescriptorCache, import_archive, structure_key
from matgl_hybrid.descriptors.groups import GROUPS, FeatureGroup
from matgl_hybrid.descriptors.sets import NAMED_SETS, DescriptorSet, UserDescriptors, get_descriptor_set
from matgl_hybrid.descriptors.table import DescriptorTable, featurize_file
from matgl_hybrid.descriptors.transform import DescriptorTransform

__all__ = [
    "GROUPS",
    "NAMED_SETS",
    "DescriptorCache",
    "DescriptorSet",
    "DescriptorTable",
    "DescriptorTransform",
    "FeatureGroup",
    "UserDescriptors",
    "archive_values",
    "featurize",
    "featurize_file",
    "get_descriptor_set",
    "import_archive",
    "structure_key",
]
