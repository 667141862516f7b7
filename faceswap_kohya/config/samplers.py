"""One sampler vocabulary for every place that picks a sampler: the preset (`sampling.sampler` for
sd-scripts' sample images, `regularization.scheduler` for generated class images) and `--sampler`
of generate / compare / swap.

Each name says which diffusers scheduler generates with it, its A1111 label (written into PNGs) and
the name sd-scripts' `--sample_sampler` knows for it (None: sd-scripts has no such sampler). The
names sd-scripts uses for the same samplers (`dpmsolver++`, `k_euler`, ...) are accepted as aliases.
No torch here: this module is data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from faceswap_kohya.errors import UserError


@dataclass(frozen=True)
class Sampler:
    diffusers: str  # scheduler class in diffusers
    a1111: str  # A1111's name, for image metadata
    sd_scripts: Optional[str]  # sd-scripts' --sample_sampler name; None: sd-scripts lacks it
    config: dict = field(default_factory=dict)  # scheduler config set on top of the model's own


SAMPLERS: dict[str, Sampler] = {
    "euler": Sampler("EulerDiscreteScheduler", "Euler", "euler"),
    "euler_a": Sampler("EulerAncestralDiscreteScheduler", "Euler a", "euler_a"),
    "heun": Sampler("HeunDiscreteScheduler", "Heun", "heun"),
    "lms": Sampler("LMSDiscreteScheduler", "LMS", "lms"),
    "pndm": Sampler("PNDMScheduler", "PLMS", "pndm"),
    "ddim": Sampler("DDIMScheduler", "DDIM", "ddim"),
    "dpm_2": Sampler("KDPM2DiscreteScheduler", "DPM2", "dpm_2"),
    "dpm_2_a": Sampler("KDPM2AncestralDiscreteScheduler", "DPM2 a", "dpm_2_a"),
    "dpmpp_2m": Sampler("DPMSolverMultistepScheduler", "DPM++ 2M", "dpmsolver++",
                        {"algorithm_type": "dpmsolver++", "use_karras_sigmas": False, "final_sigmas_type": "zero"}),
    "dpmpp_2m_karras": Sampler("DPMSolverMultistepScheduler", "DPM++ 2M Karras", None,
                               {"algorithm_type": "dpmsolver++", "use_karras_sigmas": True, "final_sigmas_type": "zero"}),
    "dpmsolver": Sampler("DPMSolverMultistepScheduler", "DPM-Solver", "dpmsolver",  # diffusers refuses final sigma 0 here
                         {"algorithm_type": "dpmsolver", "use_karras_sigmas": False, "final_sigmas_type": "sigma_min"}),
    "dpmsingle": Sampler("DPMSolverSinglestepScheduler", "DPM-Solver single-step", "dpmsingle"),
}
# sd-scripts' names for the same samplers.
ALIASES = {"dpmsolver++": "dpmpp_2m", "k_lms": "lms", "k_euler": "euler", "k_euler_a": "euler_a",
           "k_dpm_2": "dpm_2", "k_dpm_2_a": "dpm_2_a"}
SD_SCRIPTS_SAMPLERS = tuple(name for name, s in SAMPLERS.items() if s.sd_scripts)


def canonical(name) -> object:
    """The vocabulary's name for `name` (aliases resolved); anything else is returned as given."""
    return ALIASES.get(name, name) if isinstance(name, str) else name


def check_sampler(name: str, label: str = "sampler") -> str:
    """The vocabulary's name for `name`, or a UserError naming `label` and every choice."""
    found = canonical(name)
    if found not in SAMPLERS:
        raise UserError(f"{label} {name!r}: use one of {', '.join(SAMPLERS)}")
    return found
