/*
 * Loads libvulkan at run time: dlopen, vkGetInstanceProcAddr, then the instance- and device-level
 * functions of CVulkan.h. Messages are static strings (safe to return without ownership rules).
 */
#include "CVulkan.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

static pthread_once_t library_once = PTHREAD_ONCE_INIT;
static void *library;
static PFN_vkGetInstanceProcAddr get_instance_proc_addr;

static void open_library(void) {
    library = dlopen("libvulkan.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!library) library = dlopen("libvulkan.so", RTLD_NOW | RTLD_LOCAL);
    if (library) get_instance_proc_addr = (PFN_vkGetInstanceProcAddr)dlsym(library, "vkGetInstanceProcAddr");
}

/* Messages for missing functions: one static buffer per table kind, written once per failure. */
static char missing_message[3][160];

static const char *missing(int kind, const char *name) {
    snprintf(missing_message[kind], sizeof missing_message[kind], "the Vulkan loader does not provide %s", name);
    return missing_message[kind];
}

const char *qtale_vulkan_load_global(QTaleVulkanGlobal *out) {
    pthread_once(&library_once, open_library);
    if (!library)
        return "libvulkan.so.1 not found: install libvulkan1 and a Vulkan driver (mesa-vulkan-drivers for llvmpipe)";
    if (!get_instance_proc_addr) return "libvulkan.so.1 has no vkGetInstanceProcAddr";
    memset(out, 0, sizeof *out);
    out->GetInstanceProcAddr = get_instance_proc_addr;
    out->EnumerateInstanceVersion =
        (PFN_vkEnumerateInstanceVersion)get_instance_proc_addr(NULL, "vkEnumerateInstanceVersion");
    out->CreateInstance = (PFN_vkCreateInstance)get_instance_proc_addr(NULL, "vkCreateInstance");
    if (!out->CreateInstance) return missing(0, "vkCreateInstance");
    return NULL;
}

#define LOAD_INSTANCE(name)                                                              \
    do {                                                                                 \
        out->name = (PFN_vk##name)global->GetInstanceProcAddr(instance, "vk" #name);     \
        if (!out->name) return missing(1, "vk" #name);                                   \
    } while (0)

const char *qtale_vulkan_load_instance(const QTaleVulkanGlobal *global, VkInstance instance, QTaleVulkanInstance *out) {
    memset(out, 0, sizeof *out);
    LOAD_INSTANCE(DestroyInstance);
    LOAD_INSTANCE(EnumeratePhysicalDevices);
    LOAD_INSTANCE(GetPhysicalDeviceProperties);
    LOAD_INSTANCE(GetPhysicalDeviceProperties2);
    LOAD_INSTANCE(GetPhysicalDeviceFeatures);
    LOAD_INSTANCE(GetPhysicalDeviceQueueFamilyProperties);
    LOAD_INSTANCE(GetPhysicalDeviceMemoryProperties);
    LOAD_INSTANCE(GetPhysicalDeviceFormatProperties);
    LOAD_INSTANCE(EnumerateDeviceExtensionProperties);
    LOAD_INSTANCE(CreateDevice);
    LOAD_INSTANCE(GetDeviceProcAddr);
    return NULL;
}

#define LOAD_DEVICE(name)                                                                \
    do {                                                                                 \
        out->name = (PFN_vk##name)instance->GetDeviceProcAddr(device, "vk" #name);       \
        if (!out->name) return missing(2, "vk" #name);                                   \
    } while (0)

const char *qtale_vulkan_load_device(const QTaleVulkanInstance *instance, VkDevice device, QTaleVulkanDevice *out) {
    memset(out, 0, sizeof *out);
    LOAD_DEVICE(DestroyDevice);
    LOAD_DEVICE(GetDeviceQueue);
    LOAD_DEVICE(DeviceWaitIdle);
    LOAD_DEVICE(QueueSubmit);
    LOAD_DEVICE(QueueWaitIdle);
    LOAD_DEVICE(CreateBuffer);
    LOAD_DEVICE(DestroyBuffer);
    LOAD_DEVICE(GetBufferMemoryRequirements);
    LOAD_DEVICE(AllocateMemory);
    LOAD_DEVICE(FreeMemory);
    LOAD_DEVICE(BindBufferMemory);
    LOAD_DEVICE(MapMemory);
    LOAD_DEVICE(UnmapMemory);
    LOAD_DEVICE(CreateBufferView);
    LOAD_DEVICE(DestroyBufferView);
    LOAD_DEVICE(CreateShaderModule);
    LOAD_DEVICE(DestroyShaderModule);
    LOAD_DEVICE(CreateDescriptorSetLayout);
    LOAD_DEVICE(DestroyDescriptorSetLayout);
    LOAD_DEVICE(CreatePipelineLayout);
    LOAD_DEVICE(DestroyPipelineLayout);
    LOAD_DEVICE(CreateComputePipelines);
    LOAD_DEVICE(DestroyPipeline);
    LOAD_DEVICE(CreateDescriptorPool);
    LOAD_DEVICE(DestroyDescriptorPool);
    LOAD_DEVICE(AllocateDescriptorSets);
    LOAD_DEVICE(UpdateDescriptorSets);
    LOAD_DEVICE(CreateCommandPool);
    LOAD_DEVICE(DestroyCommandPool);
    LOAD_DEVICE(AllocateCommandBuffers);
    LOAD_DEVICE(ResetCommandBuffer);
    LOAD_DEVICE(BeginCommandBuffer);
    LOAD_DEVICE(EndCommandBuffer);
    LOAD_DEVICE(CmdBindPipeline);
    LOAD_DEVICE(CmdBindDescriptorSets);
    LOAD_DEVICE(CmdPushConstants);
    LOAD_DEVICE(CmdDispatch);
    LOAD_DEVICE(CmdPipelineBarrier);
    LOAD_DEVICE(CmdCopyBuffer);
    LOAD_DEVICE(CmdFillBuffer);
    LOAD_DEVICE(CreateFence);
    LOAD_DEVICE(DestroyFence);
    LOAD_DEVICE(WaitForFences);
    LOAD_DEVICE(ResetFences);
    LOAD_DEVICE(CreateQueryPool);
    LOAD_DEVICE(DestroyQueryPool);
    LOAD_DEVICE(CmdResetQueryPool);
    LOAD_DEVICE(CmdWriteTimestamp);
    LOAD_DEVICE(GetQueryPoolResults);
    /* Optional: present only when the device enabled VK_EXT_conditional_rendering. */
    out->CmdBeginConditionalRenderingEXT =
        (PFN_vkCmdBeginConditionalRenderingEXT)instance->GetDeviceProcAddr(device, "vkCmdBeginConditionalRenderingEXT");
    out->CmdEndConditionalRenderingEXT =
        (PFN_vkCmdEndConditionalRenderingEXT)instance->GetDeviceProcAddr(device, "vkCmdEndConditionalRenderingEXT");
    return NULL;
}
