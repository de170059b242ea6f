// sgt-cpp: the umbrella header. Include this and link sgt::sgt.
#pragma once

#include "sgt/core/dtype.hpp"
#include "sgt/core/error.hpp"
#include "sgt/core/log.hpp"
#include "sgt/core/simd.hpp"
#include "sgt/core/tensor_view.hpp"
#include "sgt/core/thread_pool.hpp"
#include "sgt/io/mapped_file.hpp"
#include "sgt/io/safetensors.hpp"
#include "sgt/io/safetensors_writer.hpp"
