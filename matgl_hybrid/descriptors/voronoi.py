"""Shared Voronoi neighbour analysis: one tessellation per structure, reused by every Voronoi descriptor."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from pymatgen.core import Structure
from pymatgen.core.local_env import VoronoiNN
from pymatgen.optimization.neighbors import find_points_in_spheres
from scipy.spatial import Voronoi

#: matminer's featurizers build ``VoronoiNN()`` with pymatgen's default cutoff (Å).
MATMINER_VORONOI_CUTOFF = 13.0


@dataclass(frozen=True)
class SiteFaces:
    """The Voronoi faces of one site, as pymatgen's ``VoronoiNN`` sees them.

    Attributes:
        vectors: (k, 3) bond vectors from the site to each face's neighbour (Å).
        solid_angle: (k,) solid angle subtended by each face (sr).
        area: (k,) face area (Å²).
        volume: (k,) volume of the pyramid from the site to the face (Å³).
        face_dist: (k,) distance from the site to the face, half the bond length (Å).
    """

    vectors: np.ndarray
    solid_angle: np.ndarray
    area: np.ndarray
    volume: np.ndarray
    face_dist: np.ndarray

    def neighbours(self, weight: str) -> tuple[np.ndarray, np.ndarray]:
        """Faces ``VoronoiNN(weight=weight, tol=0)`` keeps, and their normalised weights.

        Returns:
            mask: (k,) bool, faces with a positive ``weight`` ("solid_angle" or "area").
            weights: (k_kept,) the kept faces' weights divided by the largest one.
        """
        w = getattr(self, weight)
        mask = w > 0
        return mask, w[mask] / w.max()


def analyse(structure: Structure, cutoff: float = MATMINER_VORONOI_CUTOFF) -> list[SiteFaces]:
    """Voronoi faces of every site of ``structure``, from a single tessellation.

    matminer's site featurizers call ``VoronoiNN.get_nn_info`` once per site and featurizer (each a new
    tessellation of a 13 Å sphere). Here one tessellation of all sites is made, with the smallest sphere
    that provably gives the same cells: a point farther than twice a cell's circumradius cannot cut it.
    Cells not closed within ``cutoff`` fall back to pymatgen's per-site tessellation, exactly as matminer.

    Args:
        structure: an ordered structure with at least one site.
        cutoff: the largest neighbour sphere radius (Å), matminer's ``VoronoiNN.cutoff``.

    Returns:
        One :class:`SiteFaces` per site, in site order.

    Raises:
        RuntimeError: the structure is pathological (a face with an infinite vertex), as in pymatgen.
    """
    lattice = structure.lattice
    frac = np.mod(structure.frac_coords, 1.0)
    cart = np.ascontiguousarray(lattice.get_cartesian_coords(frac), dtype=float)
    n_sites = len(structure)
    radius = min(cutoff, 3.0 * (structure.volume / n_sites) ** (1 / 3) + 2.0)
    while True:
        faces, closed = _tessellate(cart, lattice.matrix, frac, radius)
        if all(closed) or radius >= cutoff:
            break
        radius = min(cutoff, radius * 1.6)
    for i in np.flatnonzero(~np.asarray(closed)):
        faces[i] = _per_site_faces(structure, int(i), cutoff)
    return faces


def _tessellate(
    cart: np.ndarray, matrix: np.ndarray, frac: np.ndarray, radius: float
) -> tuple[list[SiteFaces], list[bool]]:
    """Tessellate the sites (rows of ``cart``) with their periodic images within ``radius``."""
    n_sites = len(cart)
    _, points, images, _ = find_points_in_spheres(
        cart, cart, float(radius), np.array([1, 1, 1], dtype=np.int64), np.ascontiguousarray(matrix, dtype=float)
    )
    keys = np.concatenate(
        [np.column_stack([np.arange(n_sites), np.zeros((n_sites, 3))]), np.column_stack([points, images])]
    ).astype(np.int64)
    keys = np.unique(keys, axis=0)
    coords = (frac[keys[:, 0]] + keys[:, 1:]) @ matrix
    roots = np.flatnonzero(~keys[:, 1:].any(axis=1))  # sorted by site index, as keys are sorted
    voro = Voronoi(coords)
    root_of = np.full(len(coords), -1)
    root_of[roots] = np.arange(n_sites)

    ridge_points = voro.ridge_points
    site_faces: list[list[tuple[int, list[int]]]] = [[] for _ in range(n_sites)]
    for r in np.flatnonzero((root_of[ridge_points] >= 0).any(axis=1)):
        p, q = ridge_points[r]
        vind = voro.ridge_vertices[r]
        for centre, other in ((p, q), (q, p)):
            if root_of[centre] >= 0:
                site_faces[root_of[centre]].append((int(other), vind))

    faces, closed = [], []
    for i, site in enumerate(site_faces):
        centre = coords[roots[i]]
        if not site or any(-1 in vind for _, vind in site):
            faces.append(None)
            closed.append(False)
            continue
        vertices = voro.vertices[np.unique(np.concatenate([vind for _, vind in site]))]
        circumradius = np.linalg.norm(vertices - centre, axis=1).max()
        closed.append(2.0 * circumradius < radius)
        faces.append(_faces(centre, coords[[other for other, _ in site]], voro.vertices, [v for _, v in site]))
    return faces, closed


def _faces(centre: np.ndarray, neighbours: np.ndarray, vertices: np.ndarray, ridges: list[list[int]]) -> SiteFaces:
    """Face quantities of one cell with pymatgen's formulas (fan triangulation of each face)."""
    tri_face, tri = [], []
    for f, vind in enumerate(ridges):
        for j, k in itertools.pairwise(vind[1:]):
            tri_face.append(f)
            tri.append((vind[0], j, k))
    tri_face = np.asarray(tri_face, dtype=np.int64)
    v0, vj, vk = (vertices[np.asarray(tri)[:, m]] for m in range(3))
    n_faces = len(ridges)

    # Solid angle of each triangle seen from the centre (pymatgen.core.local_env.solid_angle).
    d0, d1, d2 = v0 - centre, vj - centre, vk - centre
    r0, r1, r2 = (np.linalg.norm(d, axis=1) for d in (d0, d1, d2))
    tp = np.abs(np.einsum("ij,ij->i", d0, np.cross(d1, d2)))
    de = (
        r0 * r1 * r2
        + r2 * np.einsum("ij,ij->i", d0, d1)
        + r1 * np.einsum("ij,ij->i", d0, d2)
        + r0 * np.einsum("ij,ij->i", d1, d2)
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        angle = np.where(de == 0, np.where(tp > 0, 0.5 * math.pi, -0.5 * math.pi), np.arctan(tp / de))
    angle = np.where(angle > 0, angle, angle + math.pi) * 2
    solid_angle = np.bincount(tri_face, weights=angle, minlength=n_faces)

    # Volume of the pyramid centre-face (pymatgen.core.local_env.vol_tetra(centre, v0, vj, vk)).
    tet = np.abs(np.einsum("ij,ij->i", centre - vk, np.cross(v0 - vk, vj - vk))) / 6
    volume = np.bincount(tri_face, weights=tet, minlength=n_faces)

    vectors = neighbours - centre
    face_dist = np.linalg.norm(vectors, axis=1) / 2
    return SiteFaces(vectors, solid_angle, 3 * volume / face_dist, volume, face_dist)


def _per_site_faces(structure: Structure, n: int, cutoff: float) -> SiteFaces:
    """Faces of site ``n`` from pymatgen's own per-site tessellation (cells not closed within ``cutoff``)."""
    cell = VoronoiNN(cutoff=cutoff, compute_adj_neighbors=False).get_voronoi_polyhedra(structure, n)
    stats = list(cell.values())
    centre = structure[n].coords
    return SiteFaces(
        vectors=np.array([s["site"].coords - centre for s in stats]).reshape(-1, 3),
        solid_angle=np.array([s["solid_angle"] for s in stats]),
        area=np.array([s["area"] for s in stats]),
        volume=np.array([s["volume"] for s in stats]),
        face_dist=np.array([s["face_dist"] for s in stats]),
    )
