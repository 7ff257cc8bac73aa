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
// custom role holding only what Reader lacks: the run command action and the read of its
// long-running operation. The reads the probe worker also needs (the cluster, its scale sets,
// their instances with the instance view for the power state) come from Reader on the
// subscription, assigned above: the custom role does not work without it. Scope: the whole
// subscription, because node resource groups are created by AKS (MC_... or a custom name)
// after this deployment, for every new cluster; no narrower scope is known in advance.
//
// Creating a role definition needs Microsoft.Authorization/roleDefinitions/write (Owner or
// User Access Administrator; Role Based Access Control Administrator cannot). A deployer
// without it passes nodeProbeRoleDefinitionId: the id of the same role, created beforehand by
// an administrator (docs/deploy.md); the template then only assigns it.

targetScope = 'subscription'

@description('Principal (object) id of the app identity.')
param principalId string

@description('Grant run command on scale-set instances (root on AKS nodes).')
param enableNodeProbes bool = false

@description('azd environment name: makes the custom role name unique in the tenant.')
param environmentName string

@description('Resource id (or GUID) of a node probe role an administrator created beforehand in this subscription; empty: the template creates the role (needs Microsoft.Authorization/roleDefinitions/write).')
param nodeProbeRoleDefinitionId string = ''

// Built-in role definition id (the same in every Azure cloud).
var reader = 'acdd72a7-3385-48ef-bd42-f606fba81ae7'

// The custom role's id is derived, not a literal: one per subscription and environment.
var nodeProbeRoleName = guid(subscription().id, 'tunnelwatch-node-probe', environmentName)
var createNodeProbeRole = enableNodeProbes && empty(nodeProbeRoleDefinitionId)
// A full id as `az role definition create` prints it, or its GUID (a string, never evaluated
// as a resource id while empty).
var givenNodeProbeRoleId = contains(nodeProbeRoleDefinitionId, '/') ? nodeProbeRoleDefinitionId : '${subscription().id}/providers/Microsoft.Authorization/roleDefinitions/${nodeProbeRoleDefinitionId}'
// The definition's own id when this template creates it, else the administrator's.
var nodeProbeRoleId = createNodeProbeRole ? nodeProbeRole.id : givenNodeProbeRoleId

resource readerAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(subscription().id, principalId, reader)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', reader)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource nodeProbeRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = if (createNodeProbeRole) {
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
  name: guid(subscription().id, principalId, nodeProbeRoleId)
  properties: {
    // A role definition just created may not be visible to the assignment for a few minutes
    // (replication): the deployment then fails with RoleDefinitionDoesNotExist and succeeds
    // when run again (docs/deploy.md).
    roleDefinitionId: nodeProbeRoleId
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
  dependsOn: [
    nodeProbeRole
  ]
}

output nodeProbesEnabled bool = enableNodeProbes
output nodeProbeRoleCreated bool = createNodeProbeRole
