// Subscription-wide roles: Reader always; run command only when node probes are enabled.
//
// Reader ('*/read') covers everything the scan reads: managed clusters, scale sets and their
// instances and NICs, VNets, NSGs, load balancers, NAT gateways, service tags
// (Microsoft.Network/locations/serviceTags/read) and Azure Monitor metrics
// (Microsoft.Insights/metrics/read). Monitoring Reader adds nothing the scan uses (it is
// '*/read' plus Log Analytics search), so it is not assigned.
//
// Node probes run a script as root on AKS nodes through VMSS run command. That breaks the
// product's read-only promise, so it is opt-in (enableNodeProbes, default false) and uses a
// custom role holding only the run command action plus the reads it needs. Scope: the whole
// subscription, because node resource groups are created by AKS (MC_... or a custom name)
// after this deployment, for every new cluster; no narrower scope is known in advance.
// Everything this custom role reads, Reader grants too; the reads are listed so the role still
// works if Reader is later narrowed to resource groups.

targetScope = 'subscription'

@description('Principal (object) id of the app identity.')
param principalId string

@description('Grant run command on scale-set instances (root on AKS nodes).')
param enableNodeProbes bool = false

@description('azd environment name: makes the custom role name unique in the tenant.')
param environmentName string

// Built-in role definition id (the same in every Azure cloud).
var reader = 'acdd72a7-3385-48ef-bd42-f606fba81ae7'

// The custom role's id is derived, not a literal: one per subscription and environment.
var nodeProbeRoleName = guid(subscription().id, 'tunnelwatch-node-probe', environmentName)

resource readerAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(subscription().id, principalId, reader)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', reader)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource nodeProbeRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = if (enableNodeProbes) {
  name: nodeProbeRoleName
  properties: {
    roleName: 'tunnelwatch node probe (${environmentName}, ${subscription().subscriptionId})'
    description: 'Runs the tunnelwatch node probe script on AKS scale-set instances (VMSS run command, as root). Assigned only when node probes are enabled.'
    type: 'CustomRole'
    permissions: [
      {
        actions: [
          // The one action that changes anything: run a script on a scale-set instance.
          'Microsoft.Compute/virtualMachineScaleSets/virtualMachines/runCommand/action'
          // Find the scale set and the instance, and check its power state before probing.
          'Microsoft.Compute/virtualMachineScaleSets/read'
          'Microsoft.Compute/virtualMachineScaleSets/virtualMachines/read'
          'Microsoft.Compute/virtualMachineScaleSets/virtualMachines/instanceView/read'
          // Poll the run command's long-running operation (Azure-AsyncOperation header).
          'Microsoft.Compute/locations/operations/read'
        ]
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
    assignableScopes: [
      subscription().id
    ]
  }
}

resource nodeProbeAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (enableNodeProbes) {
  name: guid(subscription().id, principalId, nodeProbeRoleName)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', nodeProbeRoleName)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
  dependsOn: [
    nodeProbeRole
  ]
}

output nodeProbesEnabled bool = enableNodeProbes
