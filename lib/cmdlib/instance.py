"""Instance logical units, gathered for the opcode processor (mcpu._LU_MODULES "instance").

The units live in modules split by domain; importing them here also registers
the ``instance`` query resource.
"""

from corral.cmdlib.instance_create import LUInstanceCreate
from corral.cmdlib.instance_ops import (LUInstanceConsole, LUInstanceReboot, LUInstanceReinstall,
                                        LUInstanceRemove, LUInstanceRename, LUInstanceShutdown,
                                        LUInstanceStartup)
from corral.cmdlib.instance_query import LUInstanceQueryData
from corral.cmdlib.instance_set_params import LUInstanceSetParams
from corral.cmdlib.instance_storage import (LUInstanceActivateDisks, LUInstanceDeactivateDisks,
                                            LUInstanceGrowDisk, LUInstanceRecreateDisks)

__all__ = ["LUInstanceCreate", "LUInstanceConsole", "LUInstanceReboot", "LUInstanceReinstall",
           "LUInstanceRemove", "LUInstanceRename", "LUInstanceShutdown", "LUInstanceStartup",
           "LUInstanceQueryData", "LUInstanceSetParams", "LUInstanceActivateDisks",
           "LUInstanceDeactivateDisks", "LUInstanceGrowDisk", "LUInstanceRecreateDisks"]
