"""gmexport - writes gmserve model files from PyTorch modules.

    import gmexport
    gmexport.save_vae("vae.safetensors", encoder, decoder, image="28x28x1", latent_dim=20)
    gmexport.save_gan("gan.safetensors", generator, image="28x28x1", latent_dim=64,
                      inputs=("z", "label"), num_classes=10)

Modules are traced with torch.fx into gmserve layer graphs; what cannot be
translated exactly raises ExportError naming the module and the reason.
Every file carries probe inputs and PyTorch's outputs for them, which the
server recomputes at load. `python3 -m gmexport --help` is the command line.
"""
from .errors import ExportError
from .families import save_aae, save_gan, save_nade, save_pixelcnn, save_pixelrnn, save_translator, save_vae
from .trace import export_network, method

__all__ = ["ExportError", "save_vae", "save_gan", "save_aae", "save_nade", "save_pixelcnn", "save_pixelrnn", "save_translator",
           "export_network", "method"]
